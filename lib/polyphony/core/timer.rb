# frozen_string_literal: true

module Polyphony
  # A coarse shared timer: one fiber ticking every `resolution`
  # seconds serves any number of sleeps and timeouts, which expire at tick
  # granularity. Cheaper than a kernel timer each when there are thousands.
  class Timer
    include Waiting

    # Spins the ticking fiber as a child of the current fiber.
    def initialize(tag = nil, resolution:)
      Kernel.raise ArgumentError, 'resolution must be positive' unless resolution.is_a?(Numeric) && resolution.positive?

      @resolution = resolution
      # Every pending sleep or timeout, possibly several per fiber (a sleep
      # inside a timeout): entry => true.
      @timeouts = {}.compare_by_identity
      @fiber = Fiber.current.spin(tag, 1) { Thread.current.backend.timer_loop(resolution) { tick } }
    end

    def stop
      @fiber.stop
      self
    end

    # Parks the current fiber for about `duration` seconds.
    def sleep(duration)
      e = add_entry(duration, nil)
      Thread.current.backend.wait_event(true)
    ensure
      @timeouts.delete(e)
    end

    # Spins a fiber that runs the block after `interval`.
    def after(interval, &block)
      timer = self
      Fiber.current.spin(nil, 1) do
        timer.sleep(interval)
        block.call
      end
    end

    # Runs the block every `interval` seconds in the current fiber.
    def every(interval)
      Kernel.raise TypeError, "expected a Numeric interval, got #{interval.class}" unless interval.is_a?(Numeric)
      Kernel.raise ArgumentError, 'interval must be positive' unless interval.positive?

      target = now + interval
      loop do
        sleep_until(target)
        yield
        target += interval while target <= now
      end
    end

    # Raises `with_exception` in the block if it runs longer than `interval`.
    def cancel_after(interval, with_exception: Polyphony::Cancel, &block)
      error = Exception.instantiate(*Array(with_exception))
      with_timeout(interval, error, &block)
    end

    # Returns `with_value` if the block runs longer than `interval`.
    def move_on_after(interval, with_value: nil, &block)
      error = Polyphony::MoveOn.new(with_value)
      with_timeout(interval, error, &block)
    rescue Polyphony::MoveOn => e
      raise unless e.equal?(error)

      e.value
    end

    # Restarts the countdown of the current fiber's innermost timeout.
    def reset
      fiber = Fiber.current
      e = @timeouts.keys.reverse.find { |x| x[:fiber] == fiber && x[:error] }
      e[:target] = now + e[:interval] if e
      self
    end

    private

    def add_entry(interval, error)
      e = { fiber: Fiber.current, interval: interval, target: now + interval, error: error }
      @timeouts[e] = true
      e
    end

    def sleep_until(target)
      delta = target - now
      self.sleep(delta) if delta.positive?
    end

    def with_timeout(interval, error)
      e = add_entry(interval, error)
      yield
    ensure
      @timeouts.delete(e)
      Thread.current.backend.unschedule(Fiber.current, error)
    end

    def tick
      t = now
      @timeouts.keys.each do |e| # rubocop:disable Style/HashEachMethods (deletes while iterating)
        next if e[:target] > t

        @timeouts.delete(e)
        e[:error] ? e[:fiber].schedule(e[:error]) : e[:fiber].schedule
      end
    end
  end
end
