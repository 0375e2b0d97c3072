# frozen_string_literal: true

# Process-level set-up done once by `require 'polyphony'`.
module Polyphony
  class << self
    attr_accessor :original_pid

    # The process-level side effects of `require 'polyphony'`:
    # main fiber and backend, at_exit shutdown of child fibers, default
    # SIGINT/SIGTERM handling.
    def __setup_process__
      @original_pid = ::Process.pid
      Thread.current.setup_fiber_scheduling
      Thread.current.backend # raises here if the forced backend is unavailable
      install_terminating_signal_handlers
      at_exit { __at_exit__ }
    end

    # Terminates and awaits every child of the fiber running the exit hooks,
    # keeping the program's exit status.
    def __at_exit__
      return unless ::Process.pid == @original_pid

      status = $!
      __stop_other_threads__
      Fiber.current.shutdown_all_children
    rescue Exception => e # rubocop:disable Lint/RescueException
      warn "polyphony: error while shutting down fibers: #{e.class}: #{e.message}" unless status
    end

    # Other threads get Terminate in their main fiber (their fiber trees
    # unwind) and are waited for; one that does not end within a second
    # (stuck outside any switchpoint) is killed the stock way.
    def __stop_other_threads__
      threads = Thread.list.reject { |t| t == Thread.current || !t.alive? }
      threads.each(&:kill)
      threads.each do |t|
        t.join(1)
      rescue Exception # rubocop:disable Lint/RescueException
        nil
      ensure
        t.orig_kill if t.alive?
      end
    end

    # SIGTERM raises SystemExit (status 0) in the main fiber; the first SIGINT
    # raises Interrupt there, any later one exits at once (`exit!`, status
    # 1, no cleanup). Raw handlers, run in the signal context: when the
    # signal interrupts the main fiber itself (busy in Ruby or C code that
    # never reaches a switchpoint, such as an event loop, or waiting in the
    # backend), the exception is raised right there, as stock Ruby does;
    # otherwise it is scheduled for the main fiber's next switchpoint.
    def install_terminating_signal_handlers
      orig_trap('SIGTERM') { __signal_main_fiber__(SystemExit.new(0)) }
      orig_trap('SIGINT') do
        orig_trap('SIGINT') { exit! }
        __signal_main_fiber__(Interrupt.new)
      end
    end

    def __signal_main_fiber__(exception)
      main = Thread.main.main_fiber
      Kernel.raise exception if Fiber.current == main

      main.schedule_with_priority(exception)
    end
  end
end
