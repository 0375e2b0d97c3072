# frozen_string_literal: true

# `IO.select` that parks only the calling fiber, on every Ruby (the
# Fiber::Scheduler's `io_select` hook exists only from Ruby 3.2, and never
# applies to a blocking fiber such as Ruby 3.1's main fiber). The sets, the
# result and the errors are stdlib's; an IO with bytes in its read buffer is
# readable at once, as stdlib's is.
class ::IO
  class << self
    alias orig_select select unless method_defined?(:orig_select)

    def select(read, write = nil, error = nil, timeout = nil)
      deadline = __select_deadline__(timeout)
      loop do
        ready = __select_now__(read, write, error)
        return ready if ready

        left = deadline && (deadline - ::Process.clock_gettime(::Process::CLOCK_MONOTONIC))
        return nil if left && left <= 0

        __select_wait__(read, write, error, left)
      end
    end

    private

    # The monotonic time the wait ends at (nil: never). ArgumentError for a
    # negative timeout, TypeError for one that is not a number, as stdlib.
    def __select_deadline__(timeout)
      return nil if timeout.nil?

      Kernel.raise TypeError, "can't convert #{timeout.class} into time interval" unless timeout.is_a?(Numeric)
      Kernel.raise ArgumentError, 'time interval must not be negative' if timeout.negative?

      ::Process.clock_gettime(::Process::CLOCK_MONOTONIC) + timeout
    end

    # What is ready now: stdlib's zero-timeout select (which checks the
    # arguments), plus the readers with buffered bytes; nil if nothing.
    def __select_now__(read, write, error)
      buffered = read.is_a?(Array) ? read.select { |io| __pending_read?(io) } : []
      ready = __select_poll__(read, write, error)
      return ready if buffered.empty?

      ready ||= [[], [], []]
      [(buffered + ready[0]).uniq, ready[1], ready[2]]
    end

    # Bytes `gets` & co. buffered, or an interrupted read kept: readable.
    def __pending_read?(io)
      io.is_a?(IO) && !io.closed? && io.__send__(:__pending?)
    end

    # stdlib's select with a zero timeout. From Ruby 3.2 it would call the
    # scheduler's `io_select` hook in a non-blocking fiber, which comes back
    # here: it runs as a blocking fiber.
    if Fiber.respond_to?(:blocking)
      def __select_poll__(read, write, error)
        Fiber.blocking { orig_select(read, write, error, 0) }
      end
    else
      def __select_poll__(read, write, error)
        orig_select(read, write, error, 0)
      end
    end

    # Parks the fiber until one of the IOs may be ready (or `left` seconds
    # passed): in the fiber itself for one IO, with a waiter fiber per IO
    # otherwise.
    def __select_wait__(read, write, error, left)
      waits = (Array(read) + Array(error)).map { |io| [io.to_io, false] } + Array(write).map { |io| [io.to_io, true] }
      backend = Thread.current.backend
      return backend.timeout(left, nil, nil) { backend.wait_io(*waits.first) } if waits.size == 1 && left
      return backend.wait_io(*waits.first) if waits.size == 1
      return __select_sleep__(left) if waits.empty?

      __select_wait_any__(waits, left)
    end

    def __select_sleep__(left)
      left ? sleep(left) : suspend
    end

    def __select_wait_any__(waits, left)
      selector = Fiber.current
      backend = Thread.current.backend
      waiters = waits.map do |io, w|
        spin do
          backend.wait_io(io, w)
          selector.schedule(:__select_ready__)
        end
      end
      left ? backend.timeout(left, nil, nil) { backend.wait_event(true) } : backend.wait_event(true)
    ensure
      waiters&.each(&:stop)
    end
  end
end
