# frozen_string_literal: true

# Threads (docs/scheduling.md, "Threads"; docs/differences.md, **thread join
# raises**). Every thread has its own backend, run
# queue and main fiber. The thread's block runs in its main fiber; when it
# ends, the main fiber's children are shut down, the result is recorded and
# the fibers waiting in `join`/`value` (in any thread) are woken.
#
# Waiting is fiber-aware: `join`, `value` park only the calling fiber.
# `kill` and `raise` are delivered to the thread's main fiber at its next
# switchpoint (a thread blocked in the kernel is woken for it).
class ::Thread
  alias orig_initialize initialize
  alias orig_join join
  alias orig_value value
  alias orig_kill kill
  alias orig_raise raise
  alias orig_inspect inspect

  # Runs the block in a new thread with its own backend. An uncaught
  # exception is captured as the thread's result (no report is printed; it
  # is raised by `join`/`value`).
  def initialize(*args, &block)
    Kernel.raise ThreadError, 'must be called with a block' unless block

    @__done_lock__ = Polyphony::CoreMutex.new
    @__joiners__ = []
    @__done__ = false
    @__location__ = block.source_location&.join(':')
    orig_initialize(*args) { |*thread_args| __run__(block, thread_args) }
  end

  # Prepares the current thread: main fiber, backend and the Fiber::Scheduler
  # on that backend.
  def setup_fiber_scheduling
    @main_fiber = Fiber.current
    @main_fiber.setup_main_fiber
    backend
    Fiber.set_scheduler(Polyphony::FiberScheduler.new) unless Fiber.scheduler.is_a?(Polyphony::FiberScheduler)
    self
  end

  def main_fiber
    @main_fiber ||= (Thread.current == self ? Fiber.current.setup_main_fiber : nil)
  end

  # The block's value, or its exception (raw stored result).
  attr_reader :result

  # "file:line" of the thread's block.
  def location
    @__location__
  end

  # Waits (fiber-aware) for the thread to end; raises the thread's
  # exception (docs/differences.md, **thread join raises**). Without a
  # limit, returns the block's value (Polyphony's `join`); with `timeout`
  # (seconds), returns the thread, or nil if it is still running by then
  # (stdlib's, so that `th.join(5) or raise` cannot mistake a thread that
  # returned nil for a timeout: docs/differences.md, **join with a limit**).
  def join(timeout = nil)
    return __stock_join__(timeout) unless @__joiners__

    Kernel.raise ThreadError, 'Target thread must not be current thread' if Thread.current == self

    return nil unless __wait_done__(timeout)

    orig_join
    Kernel.raise @result if @result.is_a?(Exception)

    timeout.nil? ? @result : self
  end
  alias await join

  # The block's value (waits for it); raises the thread's exception.
  def value
    join
  end

  # Ends the thread: Polyphony::Terminate is raised in its main fiber at its
  # next switchpoint, so the thread's fiber tree unwinds (ensure blocks
  # run) and its result is nil. Returns self.
  def kill
    return orig_kill if Thread.current == self || !@__joiners__
    return self if @__done__ || !alive?

    __main_fiber_when_started__&.schedule(Polyphony::Terminate.new)
    self
  end
  alias kill_safe kill
  alias terminate kill
  alias exit kill

  # Raises an exception (built like Kernel#raise's arguments; RuntimeError
  # by default) in the thread's main fiber at its next switchpoint, and
  # returns that fiber. Inside the thread itself, raises at once.
  def raise(*args)
    Kernel.raise(*args) if Thread.current == self
    return orig_raise(*args) unless @__joiners__

    error = args.empty? ? RuntimeError.new('unhandled exception') : Exception.instantiate(*args)
    __main_fiber_when_started__&.schedule(error)
    @main_fiber
  end

  # Sends `msg` to the thread's main fiber mailbox; returns that fiber.
  def <<(msg)
    Thread.pass until main_fiber || !alive?
    Kernel.raise ThreadError, "can't send to a thread that has ended" unless main_fiber

    main_fiber << msg
  end
  alias send <<

  def inspect
    return orig_inspect unless @__location__

    name = self.name ? "@#{self.name}" : ''
    "#<Thread:0x#{format('%016x', object_id)}#{name} #{@__location__} #{status || 'dead'}>"
  end
  alias to_s inspect

  def idle_gc_period=(period)
    __backend_or_raise__.idle_gc_period = period
  end

  # The same as `setup_fiber_scheduling` (Polyphony's name for it).
  alias setup setup_fiber_scheduling

  # True once the thread's block ended and its result is recorded.
  def done?
    @__done__ == true
  end

  # Records `result` as the thread's result and wakes the fibers waiting in
  # `join`/`value` (what the thread does when its block ends). Returns self.
  def mark_as_done(result)
    __mark_done__(result)
    self
  end

  # Parks the calling fiber until the thread is done. Returns true.
  def await_done
    __wait_done__(nil)
  end

  # Switches to the next runnable fiber of this (the current) thread; the
  # value it is resumed with.
  def switch_fiber
    __check_current__('switch_fiber')
    backend.switch_fiber
  end

  # Takes `fiber` off this thread's run queue. Returns the fiber.
  def fiber_unschedule(fiber)
    __check_current__('fiber_unschedule')
    backend.unschedule(fiber)
    fiber
  end

  # Schedules `fiber` with priority (it runs next) and wakes the thread: in
  # the current thread, the calling fiber lets it run at once. Returns the
  # fiber.
  def schedule_and_wakeup(fiber, value = nil)
    Kernel.raise TypeError, "expected a Fiber, got #{fiber.class}" unless fiber.is_a?(Fiber)

    fiber.schedule_with_priority(value)
    if Thread.current == self
      snooze
    else
      backend&.wakeup
    end
    fiber
  end

  # Debug mode for this (the current) thread: every scheduler event of its
  # backend is written to $stdout's fd as an `inspect` line (see
  # `Backend#trace_proc=`). Returns self.
  def debug!
    __check_current__('debug!')
    backend.trace_proc = proc { |*event| $stdout.orig_write("#{event.inspect}\n") }
    self
  end

  def on_idle(&block)
    __backend_or_raise__.idle_proc = block
  end

  class << self
    # The current thread's backend.
    def backend
      Thread.current.backend
    end

    # Like Thread.new (stock `start`/`fork` skip `initialize`, so the thread
    # would get no main fiber).
    def start(...)
      new(...)
    end
    alias fork start
  end

  private

  # The thread's backend (ThreadError if it has none yet; its methods raise
  # ThreadError from another thread).
  def __backend_or_raise__
    backend || Kernel.raise(ThreadError, 'the thread has no backend yet')
  end

  # `join` of a thread not made by Thread.new (Process.detach's), with the
  # same results.
  def __stock_join__(timeout)
    timeout.nil? ? orig_join && orig_value : orig_join(timeout)
  end

  def __check_current__(name)
    Kernel.raise ThreadError, "#{name} is only for the current thread" unless Thread.current == self
  end

  def __run__(block, args)
    setup_fiber_scheduling
    result = nil
    begin
      result = __call_block__(block, args)
    ensure
      __mark_done__(result)
      backend.finalize
    end
  end

  # The block's value, or the exception that ended it; children are shut
  # down first (an error from one of them replaces the result).
  def __call_block__(block, args)
    result =
      begin
        block.call(*args)
      rescue Polyphony::MoveOn, Polyphony::Terminate => e
        e.value
      rescue Exception => e # rubocop:disable Lint/RescueException
        e
      end
    begin
      Fiber.current.shutdown_all_children
    rescue Exception => e # rubocop:disable Lint/RescueException
      result = e
    end
    result
  end

  # The main fiber, once the thread has set it up (nil if it ended first).
  def __main_fiber_when_started__
    Thread.pass until @main_fiber || @__done__ || !alive?
    @main_fiber
  end

  def __mark_done__(result)
    joiners = @__done_lock__.synchronize do
      @result = result
      @__done__ = true
      @__joiners__.slice!(0..)
    end
    joiners.each { |f| f.schedule(:__thread_done__) }
  end

  # Parks the calling fiber until the thread is done; false on timeout.
  def __wait_done__(timeout)
    fiber = Fiber.current
    @__done_lock__.synchronize do
      return true if @__done__

      @__joiners__ << fiber
    end
    return __park_until_done__ unless timeout

    Thread.current.backend.timeout(timeout, nil, false) { __park_until_done__ }
  ensure
    @__done_lock__.synchronize { @__joiners__.delete(fiber) }
  end

  def __park_until_done__
    Thread.current.backend.wait_event(true) until @__done__
    true
  end
end
