# frozen_string_literal: true

module Polyphony
  # The thread-blocking stdlib Mutex, kept before `::Mutex` is replaced: it
  # guards the few instructions that check a construct's state and register
  # a waiter, so that a push from another thread is never lost between them.
  CoreMutex = ::Thread::Mutex

  # Shared by the constructs: park the current fiber in `list` until woken.
  module Waiting
    private

    # Registers the current fiber in `list` (under @lock, by the caller) and
    # parks it. A fiber that was woken (removed from `list` by the waker) but
    # leaves by an exception passes the wake-up on with `on_abort`.
    def park(list, fiber = Fiber.current)
      Thread.current.backend.wait_event(true)
    rescue Exception # rubocop:disable Lint/RescueException
      woken = @lock.synchronize { list.delete(fiber).nil? }
      yield if woken && block_given?
      raise
    end

    def wake_one(list)
      list.shift&.schedule
    end

    def now
      ::Process.clock_gettime(::Process::CLOCK_MONOTONIC)
    end
  end

  # A fiber-aware FIFO queue: `shift` parks only the calling
  # fiber, pushing from another thread wakes it. Optionally capped: `push`
  # on a full capped queue parks the pusher until there is room.
  #
  # The state and the one-step operations are native
  # (ext/polyphony/src/core/queue.rs: `push`, `unshift`, `shift` when an
  # item is ready, `shift_all`, `size`, `close`, ...); this file holds the
  # waiting: parking, timeouts and the retries of a capped push.
  class Queue
    # "Nothing taken" (nil is a valid item).
    NONE = Object.new.freeze
    private_constant :NONE

    # `Queue.new`, `Queue.new(capacity)` (Integer; 0 = unbounded) or
    # `Queue.new(enumerable)` (initial items, as stdlib).
    def initialize(arg = nil)
      case arg
      when nil then nil
      when Integer then cap(arg)
      else
        Kernel.raise TypeError, "can't convert #{arg.class} into Array" unless arg.respond_to?(:to_a)

        __append__(arg.to_a)
      end
    end

    # Removes and yields every current item.
    def shift_each(&)
      shift_all.each(&)
      self
    end

    # Removes the first item equal to `value`.
    def delete(value)
      items = __items__
      idx = items.index(value)
      __delete_identical__(items[idx]) if idx
      self
    end

    # Sets the capacity; 0 or nil removes the cap (releasing blocked pushers).
    def cap(size)
      Kernel.raise TypeError, 'capacity must be an Integer' unless size.nil? || size.is_a?(Integer)
      Kernel.raise ArgumentError, 'negative capacity' if size&.negative?

      __set_cap__(size)
      self
    end

    private

    # `shift` when the native fast path does not apply. Empty: `non_block`
    # → ThreadError; closed → ClosedQueueError; else parks until an item
    # arrives (nil if the queue is closed meanwhile, or after `timeout:`
    # seconds).
    #
    # The blocking form is always a switchpoint, as in Polyphony: with an
    # item ready the fiber still lets the other runnable fibers run first
    # (staying registered as a waiter meanwhile), which gives producer /
    # consumer pairs the interleaving of stdlib's Queue.
    def __shift__(non_block = false, timeout: nil) # rubocop:disable Style/OptionalBooleanParameter (stdlib signature)
      return __take_now__ if non_block

      Kernel.raise ClosedQueueError, 'queue closed' if closed? && empty?
      shift_blocking(timeout && (now + timeout))
    end

    # A capped queue's push is always a switchpoint (as in Polyphony): the
    # pusher registers, yields at once if there is room, else parks until a
    # shift makes room.
    def __insert__(value, front)
      fiber = Fiber.current
      # Not `loop`: ClosedQueueError is a StopIteration, which `loop` would
      # swallow.
      while true # rubocop:disable Style/InfiniteLoop
        return self if __insert_or_wait__(value, front)

        park_waiter(fiber, true) { __wake_pushers__ }
        return self if __insert_after_wait__(value, front)
      end
    end

    # Waits for an item (see #__shift__); nil if the queue was closed
    # meanwhile or the deadline passed.
    def shift_blocking(deadline)
      fiber = Fiber.current
      loop do
        woken = wait_for_item(fiber, deadline)
        value = __take__(NONE)
        return value unless value.equal?(NONE)
        return nil if !woken || closed?
      end
    end

    # Registers `fiber` as a shifter and parks it until woken (at once, after
    # the other runnable fibers, if an item is ready); false if the deadline
    # passed first. The fiber is no longer registered on return.
    def wait_for_item(fiber, deadline)
      __add_shifter__
      return park_shifter(fiber) unless deadline

      timed_out = Object.new
      r = Thread.current.backend.timeout(deadline - now, nil, timed_out) { park_shifter(fiber) }
      __remove_waiter__(fiber, false)
      !r.equal?(timed_out)
    end

    # A woken shifter that leaves by an exception hands its wake-up on.
    def park_shifter(fiber)
      park_waiter(fiber, false) { __pass_wake_on__ }
      __remove_waiter__(fiber, false)
      true
    end

    # Parks `fiber`, registered as a shifter or a pusher. A fiber that was
    # woken (no longer registered) but leaves by an exception runs the
    # block, which passes the wake-up on.
    def park_waiter(fiber, pusher)
      Thread.current.backend.wait_event(true)
    rescue Exception # rubocop:disable Lint/RescueException
      yield unless __remove_waiter__(fiber, pusher)
      raise
    end

    def now
      ::Process.clock_gettime(::Process::CLOCK_MONOTONIC)
    end
  end
end
