# frozen_string_literal: true
# (Copied from the neutral benchmark tools: the reference server every fiber library is compared with; only the path of common.rb differs.)
# echo server: one fiber per connection, accept_loop + read_loop.
require 'polyphony'
require_relative '../floor/common'

server = Bench.listen(Integer(ARGV[0] || 7001))
server.accept_loop do |conn|
  spin do
    conn.setsockopt(Socket::IPPROTO_TCP, Socket::TCP_NODELAY, 1)
    conn.read_loop { |data| conn.write(data) }
  rescue SystemCallError, IOError
    # peer went away
  ensure
    conn.close rescue nil
  end
end
