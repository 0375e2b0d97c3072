# frozen_string_literal: true

require 'open3'

# Helpers of the Kernel and Open3 patches in this file.
module Polyphony
  class << self
    # Installs `handler` for `signal`. A fiber created in the signal context
    # would inherit its "trap context" for good (no Mutex, Queue or join in
    # it), so the fiber that runs the handler is created beforehand, on
    # standby (unscheduled, parentless, tag :oob); the signal context only
    # schedules it with priority. Once started, it first creates the
    # standby for the next signal. Signals arriving before it started are
    # coalesced, as the kernel does.
    #
    # When the signal interrupts the main fiber while it runs code that
    # never reaches a switchpoint (EventMachine's loop, a busy loop), the
    # handler runs at once: the main fiber snoozes from the signal context,
    # so the handler fiber (first in the run queue) and the other runnable
    # fibers run before it goes on. Interrupting the scheduler itself (a
    # wait), it does not: the handler fiber runs right after anyway.
    def __trap__(signal, handler)
      standby = []
      standby[0] = __standby_signal_fiber__(handler, standby)
      orig_trap(signal) do |signo|
        standby[0].schedule_with_priority(signo)
        snooze if Fiber.current == Thread.main.main_fiber && !Thread.current.backend.__in_scheduler__?
      end
    end

    def __standby_signal_fiber__(handler, standby)
      main = Thread.current.main_fiber
      fiber = main.spin(:oob) do |signo|
        standby[0] = __standby_signal_fiber__(handler, standby)
        __signal_handler_body__(handler, signo)
      end
      main.remove_child(fiber)
      fiber.parent = nil
      fiber.oob = true
      Thread.current.backend.unschedule(fiber)
      fiber
    end

    def __signal_handler_body__(handler, signo)
      handler.respond_to?(:arity) && handler.arity.zero? ? handler.call : handler.call(signo)
    rescue Exception => e # rubocop:disable Lint/RescueException
      Thread.main.main_fiber.schedule_with_priority(e)
    end

    # Spawns for `system`: nil if the command cannot be run (raises with
    # `exception`).
    def __spawn__(args, opts, exception)
      ::Process.spawn(*args, **opts)
    rescue SystemCallError
      Kernel.raise if exception

      nil
    end

    # Stock `system(..., exception: true)`'s message.
    def __command_failure__(status, args)
      command = args.reject { |a| a.is_a?(Hash) }.join(' ')
      "Command failed with #{status.to_s.sub(/\Apid \d+ /, '')}: #{command}"
    end

    # Open3.capture3/capture2/capture2e: `popen` (:popen3, …) with its
    # output pipes read by fibers and `stdin_data:` fed; [*outputs, status].
    def __capture__(open3, popen, cmd)
      opts = cmd.last.is_a?(Hash) ? cmd.pop.dup : {}
      stdin_data = opts.delete(:stdin_data) || ''
      binmode = opts.delete(:binmode)
      open3.__send__(popen, *cmd, opts) do |stdin, *outputs, waiter|
        [stdin, *outputs].each(&:binmode) if binmode
        readers = outputs.map { |io| spin { io.read } }
        __feed_stdin__(stdin, stdin_data)
        [*readers.map(&:await), waiter.value]
      end
    end

    # Writes (or copies, for an IO-like source) `data` to a child's stdin and
    # closes it; a child that exits without reading it (EPIPE) is fine.
    def __feed_stdin__(io, data)
      if data.respond_to?(:readpartial)
        IO.copy_stream(data, io)
      else
        io.write(data)
      end
    rescue Errno::EPIPE
      nil
    ensure
      io.close
    end
  end
end

# Subprocesses and signal handlers that suspend only the calling fiber
# (docs/differences.md, **$? set**).
module Kernel
  # The stock methods, under Polyphony's names for them. `sleep` is
  # `Object#sleep` (native); Kernel's own is the stock one.
  alias orig_sleep sleep
  alias orig_p p
  alias orig_system system
  alias orig_backtick `
  alias orig_trap trap

  # Runs the command as stock `system` does (same arguments and options,
  # the child inherits stdin/stdout/stderr) but waits for it without
  # blocking the other fibers. Sets `$?` (docs/differences.md, **$? set**). Returns true/false, or nil
  # if the command could not be run (`exception: true` raises instead).
  def system(*args, exception: false, **opts)
    pid = Polyphony.__spawn__(args, opts, exception)
    return nil unless pid

    ::Process.wait(pid)
    return true if $?.success?

    Kernel.raise RuntimeError, Polyphony.__command_failure__($?, args) if exception

    false
  end

  # `cmd`: runs the command (through the shell if it has shell syntax) and
  # returns its standard output, reading it without blocking the other
  # fibers. Sets `$?` (docs/differences.md, **$? set**); stderr is inherited.
  def `(cmd)
    cmd = cmd.to_str
    r, w = IO.pipe
    pid = ::Process.spawn(cmd, out: w)
    w.close
    output = r.read
    ::Process.wait(pid)
    pid = nil
    output
  ensure
    w&.close unless w&.closed?
    r&.close unless r&.closed?
    ::Process.detach(pid) if pid
  end

  # `trap(signal) { }` / `trap(signal, callable)`: the handler runs in a new
  # fiber scheduled at the head of the run queue (so it may do I/O, spin,
  # sleep…), not in the signal context. An exception it raises goes to the
  # main thread's main fiber. String commands ("IGNORE", "DEFAULT", …) and
  # nil behave as stock. Returns the previous handler.
  def trap(signal, command = nil, &block)
    handler = block || command
    return orig_trap(signal, command, &block) unless handler.respond_to?(:call)

    Polyphony.__trap__(signal, handler)
  end

  module_function :system, :`, :trap
end

# Open3's capture methods, with stdout and stderr read by fibers.
# `popen3` & co. are stock: their pipes use the fiber-aware IO methods and
# their "wait thread" is the `Process.detach` fiber.
module Open3
  def capture3(*cmd)
    Polyphony.__capture__(self, :popen3, cmd)
  end

  def capture2(*cmd)
    Polyphony.__capture__(self, :popen2, cmd)
  end

  def capture2e(*cmd)
    Polyphony.__capture__(self, :popen2e, cmd)
  end

  module_function :capture3, :capture2, :capture2e
end
