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
      # Uncapped: no loop, and no `return` out of the synchronize block
      # (a non-local return unwinds with a longjmp: this is the hot path of
      # every mailbox and monitor message).
      return insert(value, :push) if @cap

      @lock.synchronize { add(value, :push) }
    end
    alias << push
    alias enq push

    def unshift(value)
      insert(value, :unshift)
    end

    # Removes and returns the head. Empty: `non_block` → ThreadError;
    # closed → ClosedQueueError; else parks until an item arrives (nil if
    # the queue is closed meanwhile, or after `timeout:` seconds).
    #
    # The blocking form is always a switchpoint, as in Polyphony: with an
    # item ready the fiber still lets the other runnable fibers run first
    # (staying registered as a waiter meanwhile), which gives producer /
    # consumer pairs the interleaving of stdlib's Queue.
    def shift(non_block = false, timeout: nil) # rubocop:disable Style/OptionalBooleanParameter (stdlib signature)
      return @lock.synchronize { take_now } if non_block

      @lock.synchronize { Kernel.raise ClosedQueueError, 'queue closed' if @closed && @items.empty? }
      shift_blocking(timeout && (now + timeout))
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

    # `[first, *every item present now]`, taken without a switchpoint (for
    # draining a backlog after one blocking `shift` returned `first`).
    def __shift_ready__(first)
      return [first] if @items.empty?

      [first, *shift_all]
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

    # A capped queue's push is always a switchpoint (as in Polyphony): the
    # pusher registers, yields at once if there is room, else parks until a
    # shift makes room.
    def insert(value, how)
      fiber = Fiber.current
      # Not `loop`: ClosedQueueError is a StopIteration, which `loop` would
      # swallow.
      while true # rubocop:disable Style/InfiniteLoop
        @lock.synchronize do
          Kernel.raise ClosedQueueError, 'queue closed' if @closed
          return add(value, how) unless @cap

          @push_waiters << fiber
          fiber.schedule if @items.size < @cap
        end
        park(@push_waiters, fiber) { @lock.synchronize { wake_pushers } }
        @lock.synchronize do
          @push_waiters.delete(fiber)
          return add(value, how) if !@cap || @items.size < @cap
        end
      end
    end

    # Under @lock.
    def add(value, how)
      Kernel.raise ClosedQueueError, 'queue closed' if @closed

      how == :push ? @items.push(value) : @items.unshift(value)
      wake_one(@waiters)
      self
    end

    # Under @lock: the head item; ThreadError if there is none.
    def take_now
      Kernel.raise ThreadError, 'queue empty' if @items.empty?

      take
    end

    # Under @lock.
    def take
      value = @items.shift
      wake_one(@push_waiters) if @cap
      value
    end

    # Waits for an item (see #shift); nil if the queue was closed meanwhile
    # or the deadline passed.
    def shift_blocking(deadline)
      fiber = Fiber.current
      loop do
        woken = wait_for_item(fiber, deadline)
        value = @lock.synchronize { @items.empty? ? NONE : take }
        return value unless value.equal?(NONE)
        return nil if !woken || @closed
      end
    end

    # Under @lock: as many blocked pushers as there is room for.
    def wake_pushers
      room = @cap ? @cap - @items.size : @push_waiters.size
      # Never more than there are waiters: a cap of 2**31 costs nothing.
      [room, @push_waiters.size].min.times { wake_one(@push_waiters) }
    end

    # Registers `fiber` as a shifter and parks it until woken (at once, after
    # the other runnable fibers, if an item is ready); false if the deadline
    # passed first. The fiber is no longer registered on return.
    def wait_for_item(fiber, deadline)
      @lock.synchronize do
        @waiters << fiber
        fiber.schedule unless @items.empty?
      end
      return park_shifter(fiber) unless deadline

      timed_out = Object.new
      r = Thread.current.backend.timeout(deadline - now, nil, timed_out) { park_shifter(fiber) }
      @lock.synchronize { @waiters.delete(fiber) }
      !r.equal?(timed_out)
    end

    def park_shifter(fiber)
      park(@waiters, fiber) { pass_wake_on }
      @lock.synchronize { @waiters.delete(fiber) }
      true
    end

    # A woken shifter that leaves by an exception hands its wake-up on.
    def pass_wake_on
      @lock.synchronize { wake_one(@waiters) unless @items.empty? }
    end
  end
end
