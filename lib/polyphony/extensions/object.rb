# frozen_string_literal: true

# The global API: public instance methods of Object, so they can be
# called anywhere. `snooze` and `suspend` are private Kernel methods defined
# natively.
class ::Object
  # `spin(tag = nil) { |v| }` (a child of the current fiber) and
  # `sleep(duration = nil)` are native.

  # Spins a fiber calling the block in a loop; `break` or StopIteration end
  # it. With `rate:`/`interval:` the loop is throttled.
  def spin_loop(tag = nil, rate: nil, interval: nil, &block)
    if rate || interval
      opts = rate ? { rate: rate } : { interval: interval }
      Fiber.current.spin(tag, 1) { throttled_loop(**opts, &block) }
    else
      Fiber.current.spin(tag, 1) do
        loop(&block)
      rescue LocalJumpError, StopIteration
        # `break` in the block: its home frame is gone, so it surfaces here.
        nil
      end
    end
  end

  # Runs the block in a child fiber, waits there for every fiber spun inside
  # it, and returns the block's value. An uncaught error in any of them ends
  # the scope (terminating the others) and is raised here.
  def spin_scope(&block)
    Kernel.raise RuntimeError, 'no block given' unless block

    Fiber.current.spin(:scope, 1) do
      result = block.call
      Fiber.current.await_all_children
      result
    end.await
  end

  # Spins a child that sleeps `interval`, then runs the block (its result is
  # the block's value). Stop the fiber to cancel.
  def after(interval, &block)
    Fiber.current.spin(nil, 1) do
      sleep interval
      block.call
    end
  end

  # Calls the block every `interval` seconds, in this fiber, on a drift-free
  # grid (a late call skips the ticks it missed). Ends only by `break`,
  # exception or stop.
  def every(interval, &)
    Thread.current.backend.timer_loop(interval, &)
  end

  # Runs the block; if it has not finished after `interval` seconds it is
  # interrupted at its current switchpoint and `with_value` is returned. A
  # block taking an argument receives a canceller fiber whose `reset`
  # restarts the countdown.
  def move_on_after(interval, with_value: nil, &block)
    Polyphony::Timeouts.move_on_after(interval, with_value, block)
  end

  # Like move_on_after, but raises `with_exception` (a class, a
  # `[class, message]` pair, a message String or an instance, raised as
  # given) in the block on expiry.
  def cancel_after(interval, with_exception: Polyphony::Cancel, &block)
    Polyphony::Timeouts.cancel_after(interval, with_exception, block)
  end

  # Calls the block (with the throttler) at most `rate` times per second, or
  # once per `interval:`; `count:` iterations, else forever. `break` and
  # StopIteration end it.
  def throttled_loop(rate = nil, **opts, &)
    count = opts.delete(:count)
    throttler = Polyphony::Throttler.new(rate || opts)
    if count
      count.times { throttler.call(&) }
    else
      loop { throttler.call(&) }
    end
  rescue LocalJumpError, StopIteration
    nil
  end

  # `Fiber.current.supervise(...)`.
  def supervise(...)
    Fiber.current.supervise(...)
  end

  # Takes the next message from the current fiber's mailbox (blocking).
  def receive
    Fiber.current.receive
  end

  # Passes every received message to the block; ends only by break/stop.
  def receive_loop(&)
    Fiber.current.receive_loop(&)
  end

  # All messages currently in the mailbox, without blocking.
  def receive_all_pending
    Fiber.current.receive_all_pending
  end
end
