# frozen_string_literal: true

# Per-thread set-up: every thread has its own backend and main fiber; when a
# thread's block ends, its main fiber's children are shut down first.
class ::Thread
  alias orig_initialize initialize

  def initialize(*args, &block)
    Kernel.raise ThreadError, 'must be called with a block' unless block

    orig_initialize(*args) do |*thread_args|
      setup_fiber_scheduling
      begin
        block.call(*thread_args)
      ensure
        Fiber.current.shutdown_all_children
        backend.finalize
      end
    end
  end

  # Prepares the current thread: main fiber and backend.
  def setup_fiber_scheduling
    @main_fiber = Fiber.current
    @main_fiber.setup_main_fiber
    backend
    self
  end

  def main_fiber
    @main_fiber ||= (Thread.current == self ? Fiber.current.setup_main_fiber : nil)
  end

  def idle_gc_period=(period)
    backend.idle_gc_period = period
  end

  def on_idle(&block)
    backend.idle_proc = block
  end

  class << self
    # The current thread's backend.
    def backend
      Thread.current.backend
    end
  end
end
