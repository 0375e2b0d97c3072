# frozen_string_literal: true

# Benchmark echo server: one fiber per connection.
#   ruby -Ilib bench/servers/echo_server.rb PORT
require 'polyphony'

server = TCPServer.new('127.0.0.1', Integer(ARGV.fetch(0)))
$stdout.puts 'ready'
$stdout.flush
server.accept_loop do |c|
  spin do
    c.read_loop { |data| c.write(data) }
  rescue SystemCallError, IOError
    nil
  ensure
    c.close
  end
end
