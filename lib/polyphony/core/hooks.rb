# frozen_string_literal: true

# Polyphony's half of the native protocol.
module Polyphony
  # The Ruby methods the native code calls back: the whole protocol between
  # the two layers. ext/polyphony/src/rt/hooks.rs has the matching table and
  # resolves it when this file loads (a missing or renamed hook fails the
  # `require`, not a fiber later). Each hook is a module function; its
  # comment is its contract: when native code calls it, with what, and what
  # it must return. docs/architecture.md tells where each is called from.
  module Hooks
    module_function

    # A fiber's block ended while it still has children: shuts them down
    # (this may switch fibers). Returns the fiber's [result, uncaught] after
    # errors raised by dying children (uncaught: the result is an error to
    # hand to the parent).
    def finalize_children(fiber, result, uncaught)
      until fiber.children.empty?
        begin
          fiber.shutdown_all_children(graceful: fiber.graceful_shutdown?)
        rescue Polyphony::MoveOn, Polyphony::Terminate
          next
        rescue Exception => e # rubocop:disable Lint/RescueException
          result = e
          uncaught = true
        end
      end
      [result, uncaught]
    end

    # An exception escaped a fiber's lifecycle code itself (not its block):
    # raised in the main fiber, or printed if there is none. Returns nothing.
    def fiber_body_error(error)
      main = Thread.main.main_fiber
      if main&.alive?
        main.schedule_with_priority(error)
      else
        warn "polyphony: uncaught #{error.class}: #{error.message}"
      end
    end

    # A timeout expired: the exception to raise, from its `with_exception:`
    # spec (an exception class, `[class, message]`, an exception, or a
    # message for a RuntimeError); TypeError for anything else, as
    # `Kernel#raise`.
    def timeout_exception(spec)
      Exception.instantiate(*(spec.is_a?(Array) ? spec : [spec]))
    end

    # `IO#write` of what the native fast path does not take (several
    # arguments, non-Strings, transcoding, closed or read-only IOs, errors
    # worded as Ruby's). Returns the bytes written.
    def write(io, *args)
      io.__send__(:__write__, *args)
    end

    # `IO#write` through Ruby's own method, for IOs that convert newlines or
    # hold bytes in Ruby's write buffer. Returns the bytes written.
    def stdlib_write(io, *args)
      io.orig_write(*args)
    end

    # `Fiber::Scheduler#io_wait` with a timeout: the ready events, or false
    # if `timeout` seconds pass first.
    def io_wait_timeout(scheduler, io, events, timeout)
      Thread.current.backend.timeout(timeout, nil, false) { scheduler.io_wait(io, events, nil) }
    end

    # `Fiber::Scheduler#block` with a timeout: true once unblocked, false if
    # `timeout` seconds pass first.
    def block_timeout(scheduler, blocker, timeout)
      Thread.current.backend.timeout(timeout, nil, false) { scheduler.block(blocker) }
    end
  end

  __resolve_hooks__(Hooks)
end
