# frozen_string_literal: true

# Benchmark HTTP/1.1 keep-alive hello-world server: one fiber per connection.
#   ruby -Ilib bench/servers/http_server.rb PORT
require 'polyphony'

RESPONSE = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nHello, world!"
HEAD_END = "\r\n\r\n"

server = TCPServer.new('127.0.0.1', Integer(ARGV.fetch(0)))
$stdout.puts 'ready'
$stdout.flush
server.accept_loop do |c|
  spin do
    # Bytes of an incomplete request head carried to the next read (nil when
    # none: the usual case, one read per request, appends nothing). Chunks
    # are binary, so character and byte offsets agree.
    rest = nil
    c.read_loop do |data|
      data = rest << data if rest
      pos = 0
      while (i = data.index(HEAD_END, pos))
        pos = i + 4
        c.write(RESPONSE)
      end
      rest = pos < data.bytesize ? data.byteslice(pos..) : nil
    end
  rescue SystemCallError, IOError
    nil
  ensure
    c.close
  end
end
