# frozen_string_literal: true

# Process-level set-up done once by `require 'polyphony'`.
module Polyphony
  class << self
    attr_accessor :original_pid

    # The process-level side effects of `require 'polyphony'` (spec §1):
    # main fiber and backend, at_exit shutdown of child fibers, default
    # SIGINT/SIGTERM handling.
    def __setup_process__
      @original_pid = Process.pid
      Thread.current.setup_fiber_scheduling
      Thread.current.backend # raises here if the forced backend is unavailable
      install_terminating_signal_handlers
      at_exit { __at_exit__ }
    end

    # Terminates and awaits every child of the fiber running the exit hooks,
    # keeping the program's exit status.
    def __at_exit__
      return unless Process.pid == @original_pid

      status = $!
      Fiber.current.shutdown_all_children
    rescue Exception => e # rubocop:disable Lint/RescueException
      warn "polyphony: error while shutting down fibers: #{e.class}: #{e.message}" unless status
    end

    # SIGTERM raises SystemExit (status 0) in the main fiber; the first SIGINT
    # raises Interrupt there, a second one exits at once.
    def install_terminating_signal_handlers
      trap('SIGTERM') { Thread.main.main_fiber.schedule_with_priority(SystemExit.new(0)) }
      trap('SIGINT') do
        trap('SIGINT') { exit! 130 }
        Thread.main.main_fiber.schedule_with_priority(Interrupt.new)
      end
    end
  end
end
