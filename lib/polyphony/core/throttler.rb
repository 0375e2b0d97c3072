# frozen_string_literal: true

module Polyphony
  # Runs a block at most `rate` times per second on a fixed grid:
  # the first call runs at once; a call that comes late skips the slots it
  # missed instead of bursting to catch up.
  class Throttler
    # `Throttler.new(10)`, `new(rate: 10)` or `new(interval: 0.1)`.
    def initialize(rate)
      @interval = Throttler.interval_of(rate)
      @next_time = nil
    end

    attr_reader :interval

    # Sleeps (fiber-aware) until the next slot, then yields self.
    def call
      now = ::Process.clock_gettime(::Process::CLOCK_MONOTONIC)
      if @next_time
        delta = @next_time - now
        sleep(delta) if delta.positive?
      else
        @next_time = now
      end
      result = yield self
      advance
      result
    end
    alias process call

    def stop
      self
    end

    private

    def advance
      now = ::Process.clock_gettime(::Process::CLOCK_MONOTONIC)
      @next_time += @interval
      @next_time += ((now - @next_time) / @interval).ceil * @interval if @next_time < now
    end

    class << self
      # The interval in seconds for a rate spec; RuntimeError if invalid.
      def interval_of(spec)
        interval =
          case spec
          when Numeric then spec.positive? ? 1.0 / spec : nil
          when Hash then interval_from_hash(spec)
          end
        Kernel.raise ArgumentError, "Invalid rate argument #{spec.inspect}" unless interval&.positive?

        interval
      end

      private

      def interval_from_hash(spec)
        if spec[:rate].is_a?(Numeric) && spec[:rate].positive?
          1.0 / spec[:rate]
        elsif spec[:interval].is_a?(Numeric)
          spec[:interval].to_f
        end
      end
    end
  end
end
