# frozen_string_literal: true

require 'polyphony'

module Polyphony
  # Scheduler event tracing, a debugging aid: `require
  # 'polyphony/core/debug'`. The events are those of `Backend#trace_proc=`
  # (ext/polyphony/src/core/trace.rs), as hashes.
  module Trace
    # The keys of each event's arguments, after `:event`.
    KEYS = {
      spin: %i[fiber caller],
      schedule: %i[fiber value priority caller],
      block: %i[fiber caller],
      unblock: %i[fiber value caller],
      terminate: %i[fiber value],
      enter_poll: %i[fiber],
      leave_poll: %i[fiber]
    }.freeze

    class << self
      # Sends every scheduler event of the current thread, as a Hash with
      # `:stamp` (monotonic seconds), `:event` and the event's arguments, to
      # the block; without a block, writes each hash's `inspect` to `io`
      # (`$stdout` by default) straight to its fd, without switching
      # fibers. Returns the trace proc.
      def start_event_firehose(io = nil, &block)
        out = block || proc { |event| (io || $stdout).orig_write("#{event.inspect}\n") }
        Thread.current.backend.trace_proc = proc { |name, *args| out.call(event_hash(name, args)) }
      end

      # Stops the current thread's firehose.
      def stop_event_firehose
        Thread.current.backend.trace_proc = nil
      end

      # `{ stamp:, event:, ... }` for an event and its arguments.
      def event_hash(name, args)
        keys = KEYS[name]
        hash = { stamp: ::Process.clock_gettime(::Process::CLOCK_MONOTONIC), event: name }
        return hash.merge(args: args) unless keys

        keys.each_with_index { |k, i| hash[k] = args[i] }
        hash
      end
    end
  end
end

# Debug output that never switches fibers (usable inside a trace proc).
module ::Kernel
  # Writes `args` (see `format_trace`) to the standard output's fd.
  def trace(*args)
    $stdout.orig_write(format_trace(args))
  end

  # "message: [args]" when the first argument is a String and others
  # follow, the String alone, or the `inspect` of the argument(s).
  def format_trace(args)
    if args.first.is_a?(String)
      args.size > 1 ? "#{args.first}: #{args[1..].inspect}\n" : "#{args.first}\n"
    else
      format("%p\n", args.size == 1 ? args.first : args)
    end
  end
end
