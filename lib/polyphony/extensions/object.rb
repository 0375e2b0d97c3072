# frozen_string_literal: true

# The global API (spec §5): public instance methods of Object, so they can be
# called anywhere. `snooze` and `suspend` are private Kernel methods defined
# natively.
class ::Object
  # `spin(tag = nil) { |v| }` (a child of the current fiber) is native.

  # Spins a fiber calling the block in a loop; `break` or StopIteration end
  # it. With `rate:`/`interval:` the loop is throttled.
  def spin_loop(tag = nil, rate: nil, interval: nil, &block)
    if rate || interval
      Fiber.current.spin(tag, 1) do
        Polyphony.__throttled_loop__(rate: rate, interval: interval, &block)
      end
    else
      Fiber.current.spin(tag, 1) do
        loop(&block)
      rescue LocalJumpError, StopIteration
        # `break` in the block: its home frame is gone, so it surfaces here.
        nil
      end
    end
  end

  # Parks the current fiber for `duration` seconds, or until scheduled when
  # no duration is given. Returns nil (or the value it was woken with).
  def sleep(duration = nil)
    backend = Thread.current.backend
    return backend.wait_event(true) if duration.nil?

    backend.sleep(duration)
  end

  # Takes the next message from the current fiber's mailbox (blocking).
  def receive
    Fiber.current.receive
  end

  # Passes every received message to the block; ends only by break/stop.
  def receive_loop(&)
    Fiber.current.receive_loop(&)
  end

  # All messages currently in the mailbox, without blocking.
  def receive_all_pending
    Fiber.current.receive_all_pending
  end
end

# Helpers behind the global API.
module Polyphony
  class << self
    # Minimal fixed-rate loop used by spin_loop(rate:/interval:).
    def __throttled_loop__(rate: nil, interval: nil, &block)
      interval ||= 1.0 / rate
      Kernel.raise RuntimeError, "Invalid rate argument #{rate.inspect}" unless interval.positive?

      Thread.current.backend.timer_loop(interval, &block)
    rescue StopIteration, LocalJumpError
      nil
    end
  end
end
