# frozen_string_literal: true

# Fetches URLs concurrently with the unmodified Net::HTTP: one fiber per URL.
#   ruby -Ilib examples/http_fetcher.rb URL [URL ...]
# Without arguments it starts a slow local server (0.5 s per request) and
# fetches 20 URLs from it, which takes about 0.5 s in total.
require 'polyphony'
require 'net/http'

urls = ARGV
if urls.empty?
  server = TCPServer.new('127.0.0.1', 0)
  spin do
    server.accept_loop do |conn|
      spin do
        while (line = conn.gets) && line != "\r\n"; end
        sleep 0.5
        conn.write("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        conn.close
      end
    end
  end
  urls = Array.new(20) { |i| "http://127.0.0.1:#{server.addr[1]}/#{i}" }
end

t0 = Process.clock_gettime(Process::CLOCK_MONOTONIC)
fetchers = urls.map do |url|
  spin do
    res = Net::HTTP.get_response(URI(url))
    "#{res.code} #{res.body.bytesize} bytes  #{url}"
  rescue StandardError => e
    "error #{e.class}: #{e.message}  #{url}"
  end
end
Fiber.await(*fetchers).each { |line| puts line }
puts format('%<n>d requests in %<t>.2f s', n: urls.size, t: Process.clock_gettime(Process::CLOCK_MONOTONIC) - t0)
