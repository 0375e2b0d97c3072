# frozen_string_literal: true

require 'socket'

# Polyphony's debugger.
module Polyphony
  # A debugger for a running process, over a UNIX socket (`bin/pdbg PATH` is
  # its client): `Polyphony.start_debug_server(path)`, or
  # `POLYPHONY_DEBUG_SOCKET_PATH=path` when polyphony is required. It runs on
  # a thread of its own, so it answers while the program's threads are busy
  # or blocked. One command per line, answered with lines ending with a
  # line holding only ".":
  #
  # - `threads`: every thread, with its status;
  # - `fibers`: each thread's fiber tree (tag, spin site, state);
  # - `backtrace ID`: where fiber ID (`object_id`) is now, and where it and
  #   its parents were spun;
  # - `break FILE:LINE`: the next thread to reach that line stops there (a
  #   TracePoint) and says so; `continue` lets it go on; `where` shows where
  #   it stopped; `eval EXPR` evaluates in its frame (at the top level when
  #   nothing is stopped);
  # - `switches on|off`: a line per fiber switch in any thread (a
  #   TracePoint on `:fiber_switch`), until `off`;
  # - `help`, `quit`.
  #
  # The socket is made with mode 0600: whoever can connect can run code.
  class DebugServer
    attr_reader :path

    def initialize(path)
      @path = path
      File.unlink(path) if File.socket?(path)
      @server = UNIXServer.new(path)
      File.chmod(0o600, path)
      @stops = Thread::Queue.new
      @resume = Thread::Queue.new
      @stopped = nil
      @thread = Thread.new { serve }
    end

    def stop
      @breakpoint&.disable
      @switches&.disable
      @thread.kill
      @server.close
      File.unlink(@path) if File.socket?(@path)
    end

    private

    # Plain blocking calls throughout: this thread is the debugger's own,
    # and it must answer while the program's threads are stuck.
    def serve
      loop do
        client = @server.accept
        session(client)
      rescue IOError, SystemCallError
        nil
      ensure
        client&.close
      end
    end

    def session(client)
      while (line = client.gets)
        cmd, arg = line.strip.split(' ', 2)
        break if cmd == 'quit'

        reply(client, command(client, cmd, arg))
      end
    end

    def reply(client, lines)
      client.write(Array(lines).map { |l| "#{l}\n" }.join, ".\n")
    end

    COMMANDS = %w[threads fibers backtrace break continue where eval switches help].freeze

    def command(client, cmd, arg)
      return "unknown command #{cmd.inspect}; try help" unless COMMANDS.include?(cmd)

      __send__(:"cmd_#{cmd}", arg, client)
    rescue Exception => e # rubocop:disable Lint/RescueException
      "error: #{e.class}: #{e.message}"
    end

    def cmd_help(*)
      COMMANDS.map { |c| "  #{c}" }
    end

    def cmd_threads(*)
      Thread.list.map { |t| "#{t.object_id} #{t.name || (t == Thread.main ? 'main' : '-')} #{t.status || 'dead'}" }
    end

    def cmd_fibers(*)
      Thread.list.flat_map do |t|
        root = t.main_fiber if t.respond_to?(:main_fiber) && t.instance_variable_defined?(:@main_fiber)
        ["thread #{t.object_id}"] + (root ? tree(root, 1) : ['  (no fibers)'])
      end
    end

    def tree(fiber, depth)
      line = "#{'  ' * depth}#{fiber.object_id} #{fiber.tag.inspect} #{fiber.location} (#{fiber.state})"
      [line] + fiber.children.flat_map { |c| tree(c, depth + 1) }
    end

    def cmd_backtrace(arg, *)
      fiber = fiber_by_id(arg)
      return "#{arg} is not a fiber" unless fiber

      now = fiber.alive? ? (fiber.backtrace || []) : []
      ['now:'] + now.map { |l| "  #{l}" } + ['spun at:'] + fiber.caller.map { |l| "  #{l}" }
    end

    def fiber_by_id(arg)
      obj = ObjectSpace._id2ref(Integer(arg))
      obj.is_a?(Fiber) ? obj : nil
    rescue RangeError
      nil
    end

    def cmd_break(arg, client)
      file, line = arg.to_s.split(':')
      line = Integer(line)
      @breakpoint&.disable
      @breakpoint = TracePoint.new(:line) do |tp|
        next unless tp.lineno == line && tp.path.end_with?(file)

        @breakpoint.disable
        stop_here(tp.binding, "#{tp.path}:#{tp.lineno}", client)
      end
      @breakpoint.enable
      "breakpoint at #{file}:#{line}"
    end

    # In the program's thread that hit the breakpoint: reports it and
    # blocks until `continue`.
    def stop_here(binding, where, client)
      @stopped = { binding: binding, where: where, thread: Thread.current, fiber: Fiber.current }
      reply(client, "stopped at #{where} in thread #{Thread.current.object_id}, fiber #{Fiber.current.object_id}")
      @resume.pop
    end

    def cmd_continue(*)
      return 'nothing is stopped' unless @stopped

      @stopped = nil
      @resume << :go
      'continued'
    end

    def cmd_where(*)
      @stopped ? @stopped[:where] : 'nothing is stopped'
    end

    def cmd_eval(arg, *)
      bind = @stopped ? @stopped[:binding] : TOPLEVEL_BINDING
      bind.eval(arg.to_s).inspect
    end

    def cmd_switches(arg, client)
      @switches&.disable
      return 'fiber switches: off' unless arg == 'on'

      @switches = TracePoint.new(:fiber_switch) do
        client.write("switch thread #{Thread.current.object_id} fiber #{Fiber.current.object_id}\n")
      rescue IOError, SystemCallError
        @switches&.disable
      end
      @switches.enable
      'fiber switches: on'
    end
  end

  class << self
    # Starts the debugger on a UNIX socket at `path`
    # (`POLYPHONY_DEBUG_SOCKET_PATH` by default); returns the server.
    def start_debug_server(path = ENV.fetch('POLYPHONY_DEBUG_SOCKET_PATH', nil))
      Kernel.raise ArgumentError, 'a socket path is needed (or POLYPHONY_DEBUG_SOCKET_PATH)' unless path

      DebugServer.new(path)
    end
  end
end

Polyphony.start_debug_server if ENV['POLYPHONY_DEBUG_SOCKET_PATH']
