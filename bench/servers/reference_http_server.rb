# frozen_string_literal: true
# (Copied from the neutral benchmark tools: the reference server every fiber library is compared with; only the path of common.rb differs.)
# http server: keep-alive hello world, one fiber per connection, accept_loop + read_loop.
require 'polyphony'
require_relative '../floor/common'

server = Bench.listen(Integer(ARGV[0] || 7002))
server.accept_loop do |conn|
  spin do
    conn.setsockopt(Socket::IPPROTO_TCP, Socket::TCP_NODELAY, 1)
    buf = +''
    conn.read_loop do |data|
      buf << data
      out, keep = MiniHTTP.process(buf)
      conn.write(out) if out
      break unless keep
    end
  rescue SystemCallError, IOError
    # peer went away
  ensure
    conn.close rescue nil
  end
end
