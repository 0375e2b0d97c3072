# frozen_string_literal: true

module Polyphony
  # A one-shot, single-waiter, auto-resetting signal carrying a value.
  # `signal` may be called from any thread.
  class Event
    def initialize
      @lock = CoreMutex.new
      @signalled = false
      @value = nil
      @waiter = nil
    end

    # Stores `value` and wakes the waiter; a no-op if already signalled and
    # not yet consumed.
    def signal(value = nil)
      waiter = @lock.synchronize do
        return self if @signalled

        @signalled = true
        @value = value
        @waiter
      end
      waiter&.schedule
      self
    end

    # Returns the signalled value (and resets), parking until signalled. A
    # plain wake-up value is returned as is; an exception is raised.
    def await
      fiber = Fiber.current
      @lock.synchronize do
        return consume if @signalled

        Kernel.raise RuntimeError, 'Event is already awaited by another fiber' if @waiter

        @waiter = fiber
      end
      begin
        value = Thread.current.backend.wait_event(true)
      ensure
        @lock.synchronize { @waiter = nil if @waiter == fiber }
      end
      @lock.synchronize { @signalled ? consume : value }
    end

    private

    def consume
      value = @value
      @signalled = false
      @value = nil
      value
    end
  end
end
