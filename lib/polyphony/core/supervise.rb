# frozen_string_literal: true

# Supervision (docs/structured-concurrency.md, "Supervision"): a supervising fiber monitors its children and is
# told of every one that finishes.
class ::Fiber
  # Puts this fiber in supervise mode (every fiber it spins from now on is
  # monitored by it), supervises `fibers` (default: its current children,
  # re-parenting the given ones) and then loops forever, calling the block
  # (or the callback built from the options) with `(fiber, result)` for every
  # supervised fiber that finishes. Errors of supervised fibers are not
  # raised here: they go to the callback. Never returns normally; it ends
  # when this fiber is stopped, terminated or raised into.
  #
  # Options: `restart: :always` (or true) / `:on_error`; `on_done:` called for
  # every fiber that finishes; `on_error:` for every fiber that fails (docs/differences.md, **supervise callbacks**).
  def supervise(*fibers, **opts, &block)
    block ||= Fiber.__supervise_callback__(opts)
    self.__supervising__ = true
    fibers = fibers.empty? ? children : Fiber.__check_fibers__(fibers)
    fibers.each do |f|
      f.attach_to(self) unless f.parent == self
      f.monitor(self)
    end
    mailbox = monitor_mailbox
    loop do
      fiber, result = mailbox.shift
      block&.call(fiber, result)
    end
  ensure
    self.__supervising__ = false
  end

  class << self
    RESTART_OPTIONS = [nil, false, true, :always, :on_error].freeze

    # The callback for `supervise(**opts)`, or nil if none is needed.
    def __supervise_callback__(opts)
      __check_supervise_opts__(opts)
      on_done, on_error, restart = opts.values_at(:on_done, :on_error, :restart)
      restart = :always if restart == true
      return nil unless on_done || on_error || restart

      ->(fiber, result) { __supervise_notify__(fiber, result, on_done, on_error, restart) }
    end

    def __supervise_notify__(fiber, result, on_done, on_error, restart)
      failed = result.is_a?(Exception)
      on_done&.call(fiber, result)
      on_error&.call(fiber, result) if failed
      fiber.restart if restart == :always || (restart == :on_error && failed)
    end

    def __check_supervise_opts__(opts)
      unknown = opts.keys - %i[restart on_done on_error]
      Kernel.raise ArgumentError, "unknown keywords: #{unknown.join(', ')}" unless unknown.empty?
      return if RESTART_OPTIONS.include?(opts[:restart])

      Kernel.raise ArgumentError, "invalid restart option #{opts[:restart].inspect}"
    end
  end
end
