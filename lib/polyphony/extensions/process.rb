# frozen_string_literal: true

# Processes (docs/differences.md, **fiber-aware processes**): fiber-aware `Process.wait*` and
# `Process.detach`, a fresh backend in the child of any fork,
# `Polyphony.fork`, `Polyphony.watch_process`.
module Polyphony
  # What `Process.detach` returns: the waiting fiber, which also answers
  # the Thread-like calls made on Open3's "wait thread".
  module ProcessWaiter
    attr_reader :pid

    def __pid__=(pid)
      @pid = pid
    end

    # The child's Process::Status; nil if `limit` seconds passed first.
    def join(limit = nil)
      return await unless limit

      move_on_after(limit) { await }
    end
  end

  # Prepended to `Process.singleton_class`.
  module ProcessExtensions
    # wait, waitpid, wait2, waitpid2: fiber-aware, they park only the
    # calling fiber until the child exits, then let Ruby reap it (so `$?` is
    # set in the calling thread, as stock).
    %i[wait waitpid wait2 waitpid2].each do |name|
      define_method(name) do |pid = -1, flags = 0|
        Polyphony.__wait_for_child__(pid, flags) { |f| super(pid, f) }
      end
    end

    # Returns a fiber (child of the thread's main fiber, so it outlives the
    # caller, as stock's thread does) whose result is the child's
    # Process::Status; it answers `pid`, `join(limit)` and `value`.
    def detach(pid)
      pid = Integer(pid)
      fiber = Thread.current.main_fiber.spin(:process_detach) { ::Process.wait2(pid)[1] }
      fiber.extend(ProcessWaiter)
      fiber.__pid__ = pid
      fiber
    end

    # Called by every fork (Kernel#fork, Process.fork, IO.popen('-')): the
    # child gets a fresh backend and run queue (docs/differences.md, **fiber-aware processes**).
    def _fork
      pid = super
      Polyphony.__setup_forked_child__ if pid.zero?
      pid
    end

    def daemon(*)
      r = super
      Polyphony.original_pid = ::Process.pid
      r
    end
  end

  # Prepended to `Process::Status.singleton_class`.
  module ProcessStatusExtensions
    def wait(pid = -1, flags = 0)
      Polyphony.__wait_for_child__(pid, flags) { |f| super(pid, f) }
    end
  end

  BLOCKING_WAIT_FLAGS = ::Process::WNOHANG
  POLL_WAIT_FLAGS = ::Process::WUNTRACED | (defined?(::Process::WCONTINUED) ? ::Process::WCONTINUED : 0)
  private_constant :BLOCKING_WAIT_FLAGS, :POLL_WAIT_FLAGS

  class << self
    # `Polyphony.fork { }`: forks; the block runs in the child, on a fresh
    # backend, with the default SIGINT/SIGTERM handling; the child's fibers
    # are shut down when it ends, and it exits with the block's `exit`
    # status (docs/differences.md, **fork exit status**), 1 after an uncaught exception. Returns the child's pid.
    def fork(&block)
      Kernel.raise ArgumentError, 'Polyphony.fork needs a block' unless block

      Kernel.fork do
        block.call
      ensure
        Fiber.current.shutdown_all_children
      end
    end

    # Runs `cmd` (Kernel.spawn) or forks the block (Polyphony.fork), and
    # waits for it to exit; true. If the waiting fiber is stopped or raised
    # first, the child is killed (TERM, up to 5 s, then KILL).
    def watch_process(cmd = nil, &block)
      Kernel.raise ArgumentError, 'watch_process needs a command or a block' unless cmd || block

      pid = cmd ? Kernel.spawn(cmd) : fork(&block)
      begin
        ::Process.wait(pid)
        pid = nil
        true
      ensure
        kill_process(pid) if pid
      end
    end

    # SIGTERM, then SIGKILL if the process has not exited within 5 s; reaps it.
    # Only one process: 0 and negative pids (the process group, every
    # process) raise ArgumentError.
    def kill_process(pid)
      pid = Integer(pid)
      Kernel.raise ArgumentError, "kill_process needs a single process id, not #{pid}" unless pid.positive?

      ::Process.kill('TERM', pid)
      cancel_after(5) { ::Process.wait(pid) }
    rescue Polyphony::Cancel
      ::Process.kill('KILL', pid)
      ::Process.wait(pid)
    rescue Errno::ESRCH, Errno::ECHILD
      nil
    end

    # Waits (fiber-aware) until the `Process.wait*` call in the block can
    # return at once, then makes it.
    def __wait_for_child__(pid, flags)
      flags ||= 0
      return yield(flags) if flags.anybits?(BLOCKING_WAIT_FLAGS)

      pid = Integer(pid)
      if pid.positive? && flags.nobits?(POLL_WAIT_FLAGS)
        # The child has exited (or is not ours): WNOHANG reaps at once and
        # keeps Ruby from calling the scheduler's process_wait hook.
        Thread.current.backend.wait_child(pid)
        return yield(flags | ::Process::WNOHANG)
      end
      __poll_for_child__ { yield(flags | ::Process::WNOHANG) }
    end

    # Any child or a process group: no pidfd, so poll WNOHANG, backing off
    # from 1 to 20 ms.
    def __poll_for_child__
      delay = 0.001
      loop do
        r = yield
        return r if r

        sleep(delay)
        delay = [delay * 2, 0.02].min
      end
    end

    # In the child of a fork: a fresh backend and default signal handling.
    # Ruby makes the forking fiber the root fiber of the child's thread, so
    # it becomes the main fiber (an uncaught `exit` in it ends the child
    # with that status). The fibers copied from the parent are dropped from
    # the tree: they will never run here.
    def __setup_forked_child__
      Thread.current.backend.post_fork
      fiber = Fiber.current
      fiber.children.each { |c| fiber.remove_child(c) }
      Thread.current.setup_fiber_scheduling
      install_terminating_signal_handlers
    end
  end
end

::Process.singleton_class.prepend(Polyphony::ProcessExtensions)
::Process::Status.singleton_class.prepend(Polyphony::ProcessStatusExtensions)

module Polyphony
  # `Polyphony::Process.watch(cmd = nil) { }` and `kill_process(pid)`, as in
  # Polyphony. Code in `module Polyphony` must say `::Process`.
  module Process
    class << self
      def watch(cmd = nil, &)
        Polyphony.watch_process(cmd, &)
      end

      def kill_process(pid)
        Polyphony.kill_process(pid)
      end
    end
  end
end
