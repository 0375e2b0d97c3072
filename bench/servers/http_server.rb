# frozen_string_literal: true

# Benchmark HTTP/1.1 keep-alive hello-world server: one fiber per connection.
#   ruby -Ilib bench/servers/http_server.rb PORT
require 'polyphony'

RESPONSE = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nHello, world!"

server = TCPServer.new('127.0.0.1', Integer(ARGV.fetch(0)))
$stdout.puts 'ready'
$stdout.flush
server.accept_loop do |c|
  spin do
    buf = +''
    c.read_loop do |data|
      buf << data
      while (i = buf.index("\r\n\r\n"))
        buf = buf.byteslice((i + 4)..)
        c.write(RESPONSE)
      end
    end
  rescue SystemCallError, IOError
    nil
  ensure
    c.close
  end
end
