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
      Process.clock_gettime(Process::CLOCK_MONOTONIC)
    end
  end

  # A fiber-aware FIFO queue (spec §12.1): `shift` parks only the calling
  # fiber, pushing from another thread wakes it. Optionally capped: `push`
  # on a full capped queue parks the pusher until there is room.
  class Queue
    include Waiting

    # "Nothing taken" (nil is a valid item).
    NONE = Object.new.freeze
    private_constant :NONE

    # `Queue.new`, `Queue.new(capacity)` (Integer; 0 = unbounded) or
    # `Queue.new(enumerable)` (initial items, as stdlib).
    def initialize(arg = nil)
      @lock = CoreMutex.new
      @items = []
      @waiters = []
      @push_waiters = []
      @closed = false
      @cap = nil
      case arg
      when nil then nil
      when Integer then cap(arg)
      else
        Kernel.raise TypeError, "can't convert #{arg.class} into Array" unless arg.respond_to?(:to_a)

        @items = arg.to_a.dup
      end
    end

    # Appends `value`; wakes the first waiting shifter. Parks while a capped
    # queue is full. ClosedQueueError if closed.
    def push(value)
      insert(value, :push)
    end
    alias << push
    alias enq push

    def unshift(value)
      insert(value, :unshift)
    end

    # Removes and returns the head. Empty: `non_block` → ThreadError;
    # closed → ClosedQueueError; else parks until an item arrives (nil if
    # the queue is closed meanwhile, or after `timeout:` seconds).
    def shift(non_block = false, timeout: nil) # rubocop:disable Style/OptionalBooleanParameter (stdlib signature)
      deadline = timeout && (now + timeout)
      fiber = Fiber.current
      # Not `loop`: ClosedQueueError is a StopIteration, which `loop` would
      # swallow.
      while true # rubocop:disable Style/InfiniteLoop
        value = @lock.synchronize { take_or_register(fiber, non_block) }
        return value unless value.equal?(NONE)
        return nil unless wait_for_item(fiber, deadline)
        return nil if @closed && @items.empty?
      end
    end
    alias pop shift
    alias deq shift

    # Removes and yields every current item.
    def shift_each(&)
      shift_all.each(&)
      self
    end

    # Removes and returns every current item.
    def shift_all
      @lock.synchronize do
        items = @items
        @items = []
        wake_pushers
        items
      end
    end

    # Removes the first item equal to `value`.
    def delete(value)
      @lock.synchronize do
        idx = @items.index(value)
        @items.delete_at(idx) if idx
        wake_pushers
      end
      self
    end

    def clear
      @lock.synchronize do
        @items.clear
        wake_pushers
      end
      self
    end

    # Sets the capacity; 0 or nil removes the cap (releasing blocked pushers).
    def cap(size)
      Kernel.raise TypeError, 'capacity must be an Integer' unless size.nil? || size.is_a?(Integer)
      Kernel.raise ArgumentError, 'negative capacity' if size&.negative?

      @lock.synchronize do
        @cap = size&.positive? ? size : nil
        wake_pushers
      end
      self
    end

    # The capacity, or nil.
    def capped?
      @cap
    end

    def size
      @items.size
    end
    alias length size

    def empty?
      @items.empty?
    end

    def pending?
      !@waiters.empty?
    end

    def num_waiting
      @waiters.size
    end

    # Resumes every fiber blocked in `shift` with `value` (an exception is
    # raised in them; a plain value makes them check the queue again).
    def flush_waiters(value)
      waiters = @lock.synchronize { @waiters.slice!(0..) }
      waiters.each { |f| f.schedule(value) }
      self
    end

    # Closes the queue (idempotent): pushes raise, waiting shifters get nil.
    def close
      waiters = @lock.synchronize do
        @closed = true
        @waiters.slice!(0..) + @push_waiters.slice!(0..)
      end
      waiters.each(&:schedule)
      self
    end

    def closed?
      @closed
    end

    private

    def insert(value, how)
      fiber = Fiber.current
      # Not `loop`: ClosedQueueError is a StopIteration, which `loop` would
      # swallow.
      while true # rubocop:disable Style/InfiniteLoop
        @lock.synchronize do
          Kernel.raise ClosedQueueError, 'queue closed' if @closed

          if !@cap || @items.size < @cap
            how == :push ? @items.push(value) : @items.unshift(value)
            wake_one(@waiters)
            return self
          end
          @push_waiters << fiber
        end
        park(@push_waiters, fiber) { @lock.synchronize { wake_pushers } }
      end
    end

    # Under @lock: the head item if there is one, else registers `fiber` as
    # a waiter and returns NONE.
    def take_or_register(fiber, non_block)
      return take unless @items.empty?

      Kernel.raise ThreadError, 'queue empty' if non_block
      Kernel.raise ClosedQueueError, 'queue closed' if @closed

      @waiters << fiber
      NONE
    end

    # Under @lock.
    def take
      value = @items.shift
      wake_one(@push_waiters) if @cap
      value
    end

    # Under @lock: as many blocked pushers as there is room for.
    def wake_pushers
      room = @cap ? @cap - @items.size : @push_waiters.size
      room.times { wake_one(@push_waiters) }
    end

    # Parks until woken; false if the deadline passed first.
    def wait_for_item(fiber, deadline)
      unless deadline
        park(@waiters, fiber) { pass_wake_on }
        return true
      end

      timed_out = Object.new
      r = Thread.current.backend.timeout(deadline - now, nil, timed_out) { park(@waiters, fiber) { pass_wake_on } }
      return true unless r.equal?(timed_out)

      @lock.synchronize { @waiters.delete(fiber) }
      false
    end

    # A woken shifter that leaves by an exception hands its wake-up on.
    def pass_wake_on
      @lock.synchronize { wake_one(@waiters) unless @items.empty? }
    end
  end
end
