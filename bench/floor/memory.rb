# frozen_string_literal: true
# (Copied unchanged from the neutral benchmark tools every library is measured with: the floor.)
# Reference: RSS delta of N bare Ruby fibers suspended in Fiber.yield.
require_relative 'common'
include Bench

n = arg(0, 10_000)
Fiber.new { Fiber.yield }.resume
GC.start
rss0 = rss_kb
fibers = Array.new(n) { Fiber.new { Fiber.yield }.tap(&:resume) }
GC.start
report_memory(n, rss0, rss_kb)
exit!(0)
