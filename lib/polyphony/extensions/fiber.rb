# frozen_string_literal: true

# Polyphony's fiber API: structured concurrency
# (docs/structured-concurrency.md). Every fiber spun here is a child of the
# fiber that spun it; its lifetime is bounded by its parent's, and its
# uncaught errors go to its parent.
class ::Fiber
  # The native methods (spin, the state accessors, children, monitors,
  # await, schedule) and the fiber lifecycle are defined in
  # ext/polyphony/src/ruby_api/fiber/: its `init` is their one list.

  # ---- identity and state ---------------------------------------------

  # The spin-site backtrace followed by the parent's, recursively.
  def caller
    spin_caller = __spin_caller__.map(&:to_s)
    parent ? spin_caller + parent.caller : spin_caller
  end

  def inspect
    id = object_id
    head = tag.nil? ? "#<Fiber:#{id}" : "#<Fiber #{tag}:#{id}"
    "#{head} #{location} (#{state})>"
  end
  alias to_s inspect

  # ---- control ---------------------------------------------------------

  # Stops the fiber quietly: its result becomes `value`. nil if finished.
  def stop(value = nil)
    return nil if dead?

    schedule(Polyphony::MoveOn.new(value))
    self
  end
  alias interrupt stop
  alias kill stop
  alias move_on stop

  # Cancels the fiber with an exception that propagates to its parent.
  def cancel(exception = Polyphony::Cancel)
    return nil if dead?

    exception = exception.new if exception.is_a?(Class)
    schedule(exception)
    self
  end

  # Terminates the fiber (Polyphony::Terminate; result nil, no propagation).
  def terminate(graceful: false)
    return nil if dead?

    self.graceful_shutdown = true if graceful
    schedule(Polyphony::Terminate.new)
    self
  end

  # Raises an exception in the fiber at its current switchpoint (asynchronous).
  def raise(*args)
    error = Exception.instantiate(*args)
    schedule(error) unless dead?
    self
  end

  # Restarts the fiber: a live fiber re-runs its block (same object); a
  # finished one is replaced by a new fiber with the same tag, block, parent
  # and monitors.
  def restart(value = nil)
    Kernel.raise RuntimeError, "Can't restart main fiber" if main?

    if dead?
      fiber = (parent || Thread.current.main_fiber).spin(tag, self, &__block__)
      monitors.each { |m| fiber.__add_monitor__(m) }
      fiber.schedule(value) unless value.nil?
      return fiber
    end
    schedule(Polyphony::Restart.new(value))
    self
  end
  alias reset restart

  # Restarts the fiber's block at once, from inside the fiber (its block
  # runs again with `value`); on another fiber, the same as `restart`.
  def restart_self(value = nil)
    return restart(value) unless Fiber.current == self

    Kernel.raise RuntimeError, "Can't restart main fiber" if main?

    Kernel.raise Polyphony::Restart.new(value)
  end

  # Runs the block in this fiber at its next switchpoint.
  def interject(&block)
    schedule(Polyphony::Interjection.new(block))
    self
  end

  # ---- children --------------------------------------------------------

  def terminate_all_children(graceful: false)
    children.each { |c| c.terminate(graceful: graceful) }
    self
  end

  # Terminates every child and waits until all are dead. Errors raised by
  # children while dying propagate from here.
  def shutdown_all_children(graceful: false)
    kids = children
    return self if kids.empty?

    kids.each { |c| c.terminate(graceful: graceful) }
    kids.each { |c| c.await unless c.dead? } # rubocop:disable Style/CombinableLoops
    self
  end

  # Waits for all current children; their results, or nil if none.
  def await_all_children
    kids = children
    return nil if kids.empty?

    Fiber.await(*kids)
  end

  def detach
    attach_to(thread&.main_fiber || Thread.current.main_fiber)
  end

  def attach_to(new_parent)
    Kernel.raise TypeError, "expected a Fiber, got #{new_parent.class}" unless new_parent.is_a?(Fiber)

    parent&.__remove_child__(self)
    new_parent.add_child(self)
    self
  end

  def attach_and_monitor(new_parent)
    attach_to(new_parent)
    __add_monitor__(new_parent)
    self
  end

  def attach_all_children_to(new_parent)
    children.each { |c| c.attach_to(new_parent) }
    self
  end

  # Terminates the children and waits for them (what a fiber does when its
  # block ends), passing on the graceful-shutdown flag. Returns self.
  def finalize_children
    shutdown_all_children(graceful: graceful_shutdown?)
  end

  # Tells the monitors that the fiber ended with `result`: each gets
  # `[self, result]` in its monitor mailbox; with `uncaught`, a parent
  # that is not a monitor gets `result` raised (with priority), as when a
  # fiber dies of an uncaught exception. Returns self.
  def inform_monitors(result, uncaught = false) # rubocop:disable Style/OptionalBooleanParameter (Polyphony's signature)
    watchers = monitors
    watchers.each { |m| m.monitor_mailbox << [self, result] }
    parent&.schedule_with_priority(result) if uncaught && parent && !watchers.include?(parent)
    self
  end

  # ---- internals ---------------------------------------------------------

  # `transfer`, raising what it returns if that is an exception.
  def safe_transfer(value = nil)
    result = transfer(value)
    Kernel.raise result if result.is_a?(Exception)

    result
  end

  # A `Polyphony::Event` of this fiber, made on first use (for code that
  # waits for one signal addressed to the fiber).
  def auto_watcher
    @auto_watcher ||= Polyphony::Event.new
  end

  # Out-of-band: a fiber outside the tree that runs a signal handler (see
  # `Fiber.schedule_priority_oob_fiber`).
  def oob
    @__oob__ == true
  end

  def oob=(flag)
    @__oob__ = flag ? true : false
  end

  # `__park__`, `__unpark__` and `__parked__?` (a debugging aid: a parked
  # fiber's wake-ups are held off the run queue until it is unparked) are
  # native (ext/polyphony/src/ruby_api/fiber/mod.rs).

  # ---- awaiting and monitoring ----------------------------------------

  # `await` (aliases `join`, `value`) and `Fiber.await`/`Fiber.join` are
  # native (ext/polyphony/src/ruby_api/fiber/awaiting.rs).

  # Registers `fiber` as a monitor: it gets [self, result] in its monitor
  # mailbox when this fiber finishes.
  def monitor(fiber)
    __add_monitor__(fiber)
    self
  end

  # ---- messaging -------------------------------------------------------

  # Posts a message to this fiber's mailbox (works across threads).
  def <<(msg)
    mailbox << msg
    self
  end
  alias send <<

  def receive
    mailbox.shift
  end

  def receive_loop
    loop { yield receive }
  end

  def receive_all_pending
    __mailbox__&.shift_all || []
  end

  class << self
    # Runs the block in a new out-of-band fiber (outside the fiber tree, no
    # parent), scheduled with priority: it runs at the next switchpoint,
    # before the other runnable fibers. What it raises goes to the main
    # thread's main fiber. Returns the fiber.
    def schedule_priority_oob_fiber(&block)
      Kernel.raise ArgumentError, 'no block given' unless block

      main = Thread.current.main_fiber
      fiber = main.spin(:oob) { |value| Polyphony.__signal_handler_body__(block, value) }
      main.remove_child(fiber)
      fiber.parent = nil
      fiber.oob = true
      fiber.schedule_with_priority(nil)
      fiber
    end

    # Returns [fiber, result] for the first fiber to finish (raising its
    # error); the others keep running.
    def select(*fibers)
      fibers = __fiber_list__(fibers)
      return nil if fibers.empty?

      done = fibers.find(&:dead?)
      return __select_result__(done, done.result) if done

      __select_wait__(fibers, Fiber.current)
    end

    # `await(a, b)` and `await([a, b])` alike.
    # The fibers of `await`/`select` (a list, or one Array of them);
    # TypeError for anything else.
    def __fiber_list__(args)
      __check_fibers__(args.size == 1 && args.first.is_a?(Array) ? args.first : args)
    end

    # `list`, if it holds only fibers; TypeError otherwise.
    def __check_fibers__(list)
      bad = list.find { |f| !f.is_a?(Fiber) }
      Kernel.raise TypeError, "expected a Fiber, got #{bad.class}" unless bad.nil? && !list.include?(nil)

      list
    end

    def __select_wait__(fibers, current)
      fibers.each { |f| f.__add_monitor__(current) }
      loop do
        fiber, result = current.monitor_mailbox.shift
        return __select_result__(fiber, result) if fibers.include?(fiber)
      end
    ensure
      fibers.each { |f| f.unmonitor(current) }
    end

    def __select_result__(fiber, result)
      Kernel.raise result if result.is_a?(Exception)

      [fiber, result]
    end
  end
end
