# frozen_string_literal: true

module Polyphony
  # The two mechanisms behind `move_on_after` and `cancel_after`.
  #
  # A block that takes no argument runs under `Backend#timeout`: a kernel
  # timer delivers a private marker exception that only its own scope
  # recognises, so nested scopes unwind to the right level.
  #
  # A block that takes an argument gets a *canceller* fiber (a child of the
  # caller) that sleeps the interval and then raises into the caller; the
  # block may call `canceller.reset` (`restart`) to start the countdown again.
  # The exception is recognised by identity too, and withdrawn if it was
  # queued but not yet delivered when the block ended.
  module Timeouts
    class << self
      def move_on_after(interval, with_value, block)
        return Thread.current.backend.timeout(interval, nil, with_value, &block) if block.arity.zero?

        error = Polyphony::MoveOn.new(with_value)
        with_canceller(interval, error, block)
      rescue Polyphony::MoveOn => e
        raise unless e.equal?(error)

        e.value
      end

      def cancel_after(interval, with_exception, block)
        return Thread.current.backend.timeout(interval, with_exception, &block) if block.arity.zero?

        with_canceller(interval, Exception.instantiate(*Array(with_exception)), block)
      end

      private

      def with_canceller(interval, error, block)
        fiber = Fiber.current
        canceller = fiber.spin(:canceller, 3) do
          sleep interval
          error.raising_fiber = Fiber.current
          fiber.schedule(error)
        end
        block.call(canceller)
      ensure
        canceller&.stop
        Thread.current.backend.unschedule(fiber, error)
      end
    end
  end
end
