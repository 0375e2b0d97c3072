# frozen_string_literal: true

# Streaming both ways on Polyphony::HTTP:
#   ruby -Ilib examples/http_streaming.rb
#   curl -T big.iso http://127.0.0.1:1234/upload     (the body is read as it arrives)
#   curl http://127.0.0.1:1234/download -o copy      (a file, spliced by the kernel)
#   curl http://127.0.0.1:1234/clock                 (a chunked response, one line a second)
require 'polyphony/http'
require 'digest'

FILE = ARGV[0] || __FILE__

puts 'listening on http://127.0.0.1:1234'
Polyphony::HTTP.serve('127.0.0.1', 1234) do |req|
  case req.path
  when '/upload'
    # Nothing is read before the handler asks: a slow upload holds no
    # memory beyond the chunk in hand.
    digest = Digest::SHA256.new
    size = 0
    req.each_chunk do |chunk|
      digest << chunk
      size += chunk.bytesize
    end
    req.respond("#{size} bytes, sha256 #{digest.hexdigest}\n")
  when '/download'
    req.serve_file(FILE, 'Content-Type' => 'application/octet-stream')
  when '/clock'
    req.send_headers('Content-Type' => 'text/plain')
    5.times do
      req.send_chunk("#{Time.now}\n")
      sleep 1
    end
    req.finish
  else
    req.respond("not found\n", ':status' => 404)
  end
end
