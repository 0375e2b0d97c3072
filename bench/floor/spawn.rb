# frozen_string_literal: true
# (Copied unchanged from the neutral benchmark tools every library is measured with: the floor.)
# Reference: bare Ruby fibers in the same shapes as the library scripts: 100 batches of 1,000
# created then each run to completion (spawn_b1k), then SPAWN_N created, all pending at once,
# then each run (spawn). No scheduler, no awaiting: the floor cost of a short-lived fiber.
require_relative 'common'
include Bench

t0 = now
(SPAWN_N / 1000).times { Array.new(1000) { Fiber.new { :done } }.each(&:resume) }
emit 'spawn_b1k', SPAWN_N / (now - t0), 'fibers/s'
t0 = now
Array.new(SPAWN_N) { Fiber.new { :done } }.each(&:resume)
emit 'spawn', SPAWN_N / (now - t0), 'fibers/s'
