# frozen_string_literal: true

# Polyphony's fiber API: structured concurrency (spec §3, §6). Every fiber
# spun here is a child of the fiber that spun it; its lifetime is bounded by
# its parent's, and its uncaught errors go to its parent.
class ::Fiber
  # An arbitrary label (`:main` for a thread's main fiber).
  attr_accessor :tag

  # The owning thread.
  attr_writer :thread

  # The parent fiber (nil for a main fiber). The writer does not update
  # children lists; use #attach_to.
  attr_accessor :parent

  # The fiber's result once finished (value, stop value or exception).
  attr_reader :result

  attr_writer :graceful_shutdown

  # ---- creation --------------------------------------------------------

  # Spins a child of this fiber that runs the block, and queues it. The block
  # receives the value the fiber is first resumed with.
  def spin(tag = nil, orig_caller = Kernel.caller_locations(1, 1), &block)
    fiber = Polyphony.__new_fiber__
    fiber.__prepare__(tag, block, orig_caller, self)
    (@children ||= {})[fiber] = true
    fiber.__add_monitor__(self) if @supervise_mode
    Thread.current.backend.schedule(fiber, nil)
    fiber
  end

  def __prepare__(tag, block, orig_caller, parent)
    @thread = Thread.current
    @tag = tag
    @block = block
    @caller = orig_caller
    @parent = parent
    @running = nil
    self
  end

  # Lifecycle of a spun fiber: run the block (again on Restart), then
  # finalize. Called by the native fiber body; never raises.
  def __run__(value)
    @running = true
    result, uncaught = __run_block__(value)
    __finalize__(result, uncaught)
  end

  def __run_block__(value)
    loop do
      value.invoke if value.is_a?(Exception)
      raise NoMethodError, "undefined method `call' for nil" unless @block

      return [@block.call(value), false]
    rescue Polyphony::Restart => e
      @mailbox&.clear
      value = e.value
    rescue Polyphony::MoveOn, Polyphony::Terminate => e
      return [e.value, false]
    rescue Exception => e # rubocop:disable Lint/RescueException
      e.source_fiber ||= self
      return [e, true]
    end
  end

  def __finalize__(result, uncaught)
    result, uncaught = __finalize_children__(result, uncaught)
    @result = result
    @running = false
    __inform_monitors__(result)
    @parent&.__remove_child__(self)
    parent_informed = @monitors&.key?(@parent)
    @parent.schedule_with_priority(result) if uncaught && @parent && !parent_informed
    Thread.current.backend.unschedule(self)
    nil
  rescue Exception => e # rubocop:disable Lint/RescueException
    Polyphony.__fiber_body_error__(e)
  end

  def __finalize_children__(result, uncaught)
    while @children && !@children.empty?
      begin
        shutdown_all_children(graceful: @graceful_shutdown)
      rescue Polyphony::MoveOn, Polyphony::Terminate
        next
      rescue Exception => e # rubocop:disable Lint/RescueException
        result = e
        uncaught = true
      end
    end
    [result, uncaught]
  end

  def __inform_monitors__(result)
    return unless @monitors

    @monitors.each_key { |m| m.monitor_mailbox << [self, result] }
  end

  # Marks this fiber as its thread's main fiber (tag :main, no parent).
  def setup_main_fiber
    @main = true
    @tag = :main
    @thread = Thread.current
    @parent = nil
    @running = true
    @children = {}
    self
  end

  # Adopts a fiber not created by Polyphony (thread set, no parent).
  def setup_raw
    @thread = Thread.current
    @running = true
    self
  end

  # ---- identity and state ---------------------------------------------

  def thread
    @thread
  end

  def main?
    @main ? true : nil
  end

  def children
    @children ? @children.keys : []
  end

  def location
    return '(root)' if @main

    @caller ? @caller[0].to_s : '(unknown)'
  end

  def caller
    spin_caller = (@caller || []).map(&:to_s)
    @parent ? spin_caller + @parent.caller : spin_caller
  end

  def set_caller(array)
    @caller = array
    self
  end

  def inspect
    id = object_id
    head = @tag.nil? ? "#<Fiber:#{id}" : "#<Fiber #{@tag}:#{id}"
    "#{head} #{location} (#{state})>"
  end
  alias to_s inspect

  # :running, :runnable, :waiting or :dead.
  def state
    return :dead if @running == false || !alive?
    return :running if Fiber.current == self

    backend = @thread&.backend
    backend&.runnable?(self) ? :runnable : :waiting
  end

  def dead?
    state == :dead
  end

  # nil before the block first ran, true while alive, false once finished.
  def running?
    @running
  end

  def graceful_shutdown?
    @graceful_shutdown
  end

  # ---- scheduling ------------------------------------------------------

  # Queues the fiber on its thread's run queue; the switchpoint it is parked
  # in returns `value` (raises it if it is an exception).
  def schedule(value = nil)
    __backend__&.schedule(self, value)
    self
  end

  def schedule_with_priority(value = nil)
    __backend__&.schedule(self, value, true)
    self
  end

  def __backend__
    return nil if @running == false

    (@thread || Thread.current).backend
  end

  # ---- control ---------------------------------------------------------

  # Stops the fiber quietly: its result becomes `value`. nil if finished.
  def stop(value = nil)
    return nil if @running == false || !alive?

    schedule(Polyphony::MoveOn.new(value))
    self
  end
  alias interrupt stop
  alias kill stop
  alias move_on stop

  # Cancels the fiber with an exception that propagates to its parent.
  def cancel(exception = Polyphony::Cancel)
    return nil if @running == false || !alive?

    exception = exception.new if exception.is_a?(Class)
    schedule(exception)
    self
  end

  # Terminates the fiber (Polyphony::Terminate; result nil, no propagation).
  def terminate(graceful: false)
    return nil if @running == false || !alive?

    @graceful_shutdown = true if graceful
    schedule(Polyphony::Terminate.new)
    self
  end

  # Raises an exception in the fiber at its current switchpoint (asynchronous).
  def raise(*args)
    error = Exception.instantiate(*args)
    schedule(error) unless @running == false || !alive?
    self
  end

  # Restarts the fiber: a live fiber re-runs its block (same object); a
  # finished one is replaced by a new fiber with the same tag, block, parent
  # and monitors.
  def restart(value = nil)
    Kernel.raise RuntimeError, "Can't restart main fiber" if @main

    if @running == false || !alive?
      fiber = (@parent || Thread.current.main_fiber).spin(@tag, @caller, &@block)
      @monitors&.each_key { |m| fiber.__add_monitor__(m) }
      fiber.schedule(value) unless value.nil?
      return fiber
    end
    schedule(Polyphony::Restart.new(value))
    self
  end
  alias reset restart

  # Runs the block in this fiber at its next switchpoint.
  def interject(&block)
    schedule(Polyphony::Interjection.new(block))
    self
  end

  # ---- children --------------------------------------------------------

  def __remove_child__(child)
    @children&.delete(child)
  end
  alias remove_child __remove_child__

  def add_child(child)
    (@children ||= {})[child] = true
    child.parent = self
    self
  end

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
    kids.each { |c| c.await unless c.dead? }
    self
  end

  # Waits for all current children; their results, or nil if none.
  def await_all_children
    kids = children
    return nil if kids.empty?

    Fiber.await(*kids)
  end

  def detach
    attach_to(@thread&.main_fiber || Thread.current.main_fiber)
  end

  def attach_to(new_parent)
    @parent&.__remove_child__(self)
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

  # ---- awaiting and monitoring ----------------------------------------

  # Waits for the fiber to finish; returns its result, raising it if it is an
  # exception.
  def await
    unless @running == false || !alive?
      current = Fiber.current
      Kernel.raise FiberError, 'a fiber cannot await itself' if current == self

      __add_monitor__(current)
      begin
        __wait_for_monitor_message__(current)
      ensure
        @monitors&.delete(current)
      end
    end
    Kernel.raise @result if @result.is_a?(Exception)

    @result
  end
  alias join await
  alias value await

  def __wait_for_monitor_message__(current)
    mailbox = current.monitor_mailbox
    stash = []
    loop do
      fiber, = mailbox.shift
      break if fiber == self

      stash << [fiber, fiber&.result]
    end
  ensure
    stash&.reverse_each { |m| mailbox.unshift(m) }
  end

  def __add_monitor__(fiber)
    (@monitors ||= {})[fiber] = true
  end

  # Registers `fiber` as a monitor: it gets [self, result] in its monitor
  # mailbox when this fiber finishes.
  def monitor(fiber)
    __add_monitor__(fiber)
    self
  end

  def unmonitor(fiber)
    @monitors&.delete(fiber)
    self
  end

  def monitors
    @monitors ? @monitors.keys : []
  end

  def monitor_mailbox
    @monitor_mailbox ||= Polyphony::Queue.new
  end

  # ---- messaging -------------------------------------------------------

  def mailbox
    @mailbox ||= Polyphony::Queue.new
  end

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
    @mailbox ? @mailbox.shift_all : []
  end

  class << self
    # Waits for all fibers; results in argument order. On the first error
    # the others are terminated and awaited, then the error is raised.
    def await(*fibers)
      fibers = fibers.first if fibers.size == 1 && fibers.first.is_a?(Array)
      return [] if fibers.empty?

      current = Fiber.current
      pending = {}
      fibers.each { |f| pending[f] = true unless f.dead? }
      pending.each_key { |f| f.__add_monitor__(current) }
      error = fibers.find { |f| f.dead? && f.result.is_a?(Exception) }&.result
      begin
        until pending.empty? || error
          fiber, result = current.monitor_mailbox.shift
          next unless pending.delete(fiber)

          error = result if result.is_a?(Exception)
        end
        if error
          pending.each_key(&:terminate)
          until pending.empty?
            fiber, = current.monitor_mailbox.shift
            pending.delete(fiber)
          end
          Kernel.raise error
        end
      ensure
        fibers.each { |f| f.unmonitor(current) }
      end
      fibers.map(&:result)
    end
    alias join await

    # Returns [fiber, result] for the first fiber to finish (raising its
    # error); the others keep running.
    def select(*fibers)
      fibers = fibers.first if fibers.size == 1 && fibers.first.is_a?(Array)
      return nil if fibers.empty?

      done = fibers.find(&:dead?)
      return __select_result__(done, done.result) if done

      current = Fiber.current
      fibers.each { |f| f.__add_monitor__(current) }
      begin
        loop do
          fiber, result = current.monitor_mailbox.shift
          return __select_result__(fiber, result) if fibers.include?(fiber)
        end
      ensure
        fibers.each { |f| f.unmonitor(current) }
      end
    end

    def __select_result__(fiber, result)
      Kernel.raise result if result.is_a?(Exception)

      [fiber, result]
    end
  end
end
