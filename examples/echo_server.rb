# frozen_string_literal: true

# A TCP echo server: one fiber per connection.
#   ruby -Ilib examples/echo_server.rb [port]
# then, e.g.: printf 'hello\n' | nc -q1 127.0.0.1 1234
require 'polyphony'

port = Integer(ARGV[0] || 1234)
server = TCPServer.new('0.0.0.0', port)
puts "echo server listening on port #{port}"

server.accept_loop do |conn|
  spin do
    conn.read_loop { |data| conn.write(data) }
  rescue SystemCallError
    nil # the client went away
  ensure
    conn.close
  end
end
