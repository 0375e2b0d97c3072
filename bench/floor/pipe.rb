# frozen_string_literal: true
# (Copied unchanged from the neutral benchmark tools every library is measured with: the floor.)
# Reference: one thread alternating 64 KiB write / 64 KiB read on an IO.pipe (no fibers).
require_relative 'common'
include Bench

r, w = IO.pipe
chunk = ('x' * PIPE_CHUNK).freeze
buf = +''
total = 0
t0 = now
(PIPE_TOTAL / PIPE_CHUNK).times do
  w.write(chunk)
  r.readpartial(PIPE_CHUNK, buf)
  total += buf.bytesize
end
raise "moved #{total} bytes" unless total == PIPE_TOTAL
emit 'pipe', total / (now - t0) / 1e9, 'GB/s'
