# frozen_string_literal: true

module Polyphony
  # A fiber-aware mutex (replaces `::Mutex`). Ownership is per
  # fiber; `synchronize` is re-entrant for the owner; waiters are served in
  # FIFO order (the lock is handed to the next waiter on unlock, so nobody
  # starves).
  class Mutex
    include Waiting

    def initialize
      @lock = CoreMutex.new
      @holder = nil
      @waiters = []
    end

    # Runs the block holding the lock (released on any exit).
    def synchronize
      return yield if @holder == Fiber.current

      lock
      begin
        yield
      ensure
        unlock
      end
    end

    # Parks until the lock is acquired. ThreadError if already held by the
    # current fiber; a dead holder's lock is released first.
    def lock
      fiber = Fiber.current
      @lock.synchronize do
        Kernel.raise ThreadError, 'deadlock; lock already owned by the current fiber' if @holder == fiber

        release_dead_holder
        return take(fiber) unless @holder

        @waiters << fiber
      end
      loop do
        park(@waiters, fiber) { @lock.synchronize { hand_over if @holder == fiber } }
        return self if @holder == fiber
      end
    end

    # Releases the lock (ThreadError unless held by the current fiber).
    def unlock
      @lock.synchronize do
        unless @holder == Fiber.current
          Kernel.raise ThreadError,
                       'Attempt to unlock a mutex which is not locked by the current fiber'
        end

        hand_over
      end
      self
    end

    def try_lock
      @lock.synchronize do
        release_dead_holder
        return false if @holder

        take(Fiber.current)
        true
      end
    end

    def owned?
      @holder == Fiber.current
    end

    # The holder fiber (truthy) or nil.
    def locked?
      @holder
    end

    # Releases the lock if the current fiber holds it (no error otherwise):
    # the first half of a condition variable's wait. Returns self.
    def conditional_release
      @lock.synchronize { hand_over if @holder == Fiber.current }
      self
    end

    # Takes the lock back for the current fiber (parks until it is free;
    # nothing to do if it already holds it): the second half of a condition
    # variable's wait. Returns self.
    def conditional_reacquire
      lock unless @holder == Fiber.current
      self
    end

    # Unlocks, sleeps (nil: until woken), relocks; returns the seconds slept.
    def sleep(timeout = nil)
      start = now
      unlock
      begin
        timeout ? Thread.current.backend.sleep(timeout) : Thread.current.backend.wait_event(true)
      ensure
        lock
      end
      now - start
    end

    private

    def take(fiber)
      @holder = fiber
      self
    end

    # Under @lock: gives the lock to the first waiter, or frees it.
    def hand_over
      @holder = @waiters.shift
      @holder&.schedule
    end

    def release_dead_holder
      hand_over if @holder&.dead?
    end
  end

  # Fiber-aware condition variable.
  class ConditionVariable
    include Waiting

    def initialize
      @lock = CoreMutex.new
      @waiters = []
    end

    # Releases `mutex`, parks until signalled (true) or `timeout` seconds
    # passed (false), then re-acquires `mutex`, also when interrupted.
    def wait(mutex, timeout = nil)
      unless mutex.respond_to?(:unlock) && mutex.respond_to?(:lock)
        Kernel.raise TypeError,
                     "expected a mutex, got #{mutex.class}"
      end

      fiber = Fiber.current
      @lock.synchronize { @waiters << fiber }
      mutex.unlock
      begin
        if timeout
          wait_with_timeout(fiber, timeout)
        else
          park(@waiters, fiber) { signal }
          true
        end
      ensure
        @lock.synchronize { @waiters.delete(fiber) }
        mutex.lock
      end
    end

    # Wakes the longest-waiting fiber; returns it, or nil.
    def signal
      fiber = @lock.synchronize { @waiters.shift }
      fiber&.schedule
      fiber
    end

    def broadcast
      fibers = @lock.synchronize { @waiters.slice!(0..) }
      fibers.each(&:schedule)
      self
    end

    private

    def wait_with_timeout(fiber, timeout)
      timed_out = Object.new
      r = Thread.current.backend.timeout(timeout, nil, timed_out) { park(@waiters, fiber) { signal } }
      !r.equal?(timed_out)
    end
  end

  # A re-entrant, fiber-owned monitor (replaces `::Monitor`).
  class Monitor < Mutex
    def initialize
      super
      @count = 0
    end

    def enter
      if owned?
        @count += 1
      else
        lock
        @count = 1
      end
      self
    end
    alias mon_enter enter

    def exit
      mon_check_owner
      @count -= 1
      unlock if @count.zero?
      self
    end
    alias mon_exit exit

    def try_enter
      if owned?
        @count += 1
        return true
      end
      return false unless try_lock

      @count = 1
      true
    end
    alias try_mon_enter try_enter
    alias mon_try_enter try_enter

    def synchronize
      enter
      begin
        yield
      ensure
        self.exit
      end
    end
    alias mon_synchronize synchronize

    def mon_check_owner
      Kernel.raise ThreadError, 'current fiber not owner' unless owned?
    end

    def mon_locked?
      !!locked?
    end

    def mon_owned?
      owned?
    end

    # A stdlib MonitorMixin::ConditionVariable bound to this monitor.
    def new_cond
      ::MonitorMixin::ConditionVariable.new(self)
    end

    # Used by MonitorMixin::ConditionVariable#wait: releases the monitor
    # entirely while waiting on `cond`, then restores the hold count.
    def wait_for_cond(cond, timeout)
      count = @count
      @count = 0
      cond.wait(self, timeout)
    ensure
      @count = count
    end
  end
end
