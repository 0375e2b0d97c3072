# frozen_string_literal: true
# (Copied unchanged from the neutral benchmark tools every library is measured with: the floor.)
# Reference: bare Ruby fibers in a ring, each handing off to the next with Fiber#transfer
# (no library, no queue, no I/O polling): the floor cost of a Ruby fiber switch.
require_relative 'common'
include Bench

main = Fiber.current
ring = []
t0 = now
SWITCH_FIBERS.times do |i|
  ring << Fiber.new do
    nxt = ring[(i + 1) % SWITCH_FIBERS]
    SWITCH_YIELDS.times { nxt.transfer }
    (i == SWITCH_FIBERS - 1 ? main : nxt).transfer
  end
end
ring.first.transfer
emit 'switch', SWITCH_FIBERS * SWITCH_YIELDS / (now - t0), 'switches/s'
