# frozen_string_literal: true

module Polyphony
  # Ruby's Fiber::Scheduler interface on the thread's backend.
  # Installed for every thread that uses the gem, so that code Polyphony does
  # not patch — C extensions waiting through `rb_io_wait` (pg), stdlib
  # `Thread::SizedQueue`, a `Mutex` locked by C code, `Addrinfo.getaddrinfo` —
  # suspends only the calling fiber. Ruby calls the hooks in non-blocking
  # fibers only: every spun fiber, but not the thread's main fiber on Ruby
  # 3.1 (Polyphony's patches keep covering it).
  #
  # `io_wait`, `kernel_sleep`, `block` and `unblock` are defined in Rust
  # (ext/polyphony/src/ruby_api/fiber_scheduler.rs); the rest is here.
  class FiberScheduler
    # Reads at least `length` bytes (at least one if 0) into `buffer` at
    # `offset`, unless EOF comes first; the byte count, or -errno. A regular
    # file is read at once, without a switch (ext/polyphony/src/ruby_api/io.rs:
    # `require` reads this way, and must not be interleaved with another
    # fiber's autoload).
    def io_read(io, buffer, length, offset = 0)
      __fill__(buffer, length, offset) do |want, _|
        chunk = io.__send__(:__read_file_now__, want)
        chunk == false ? Thread.current.backend.read(io, +'', want, false, 0) : chunk
      end
    rescue SystemCallError => e
      -e.errno
    end

    # Writes `length` bytes (all of the buffer past `offset` if 0); the byte
    # count, or -errno.
    def io_write(io, buffer, length, offset = 0)
      length = buffer.size - offset if length.zero?
      Thread.current.backend.write(io, buffer.get_string(offset, length))
    rescue SystemCallError => e
      -e.errno
    end

    # Waits for the child without blocking the thread; a Process::Status.
    def process_wait(pid, flags)
      Polyphony.__wait_for_child__(pid, flags) { |f| ::Process::Status.wait(pid, f) }
    end

    # Runs the block; raises `exception_class.new(*args)` in this fiber if
    # it takes longer than `duration` seconds.
    def timeout_after(duration, exception_class, *args, &)
      Thread.current.backend.timeout(duration, exception_class.new(*args), &)
    end

    # Resolves `hostname` on a worker thread; its IP addresses.
    def address_resolve(hostname)
      hostname = hostname.split('%', 2).first
      Polyphony::ThreadPool.process { ::Addrinfo.getaddrinfo(hostname, nil).map(&:ip_address).uniq }
    end

    if RUBY_VERSION >= '3.2'
      # Ruby >= 3.2 calls this from its own `IO.select` (which the gem
      # replaces: see lib/polyphony/extensions/io_select.rb) in a
      # non-blocking fiber: the gem's fiber-aware select.
      def io_select(readables, writables, exceptables, timeout)
        ::IO.select(readables, writables, exceptables, timeout)
      end

      # `IO#pread` (Ruby >= 3.3 calls this): at least `length` bytes (one
      # read if 0), at most the buffer's room past `offset`, from file offset
      # `from`; the byte count (0 at EOF), or -errno. Only seekable files
      # take a pread, and a file is never "not ready": the read runs in this
      # fiber, as the backend's reads of regular files do.
      def io_pread(io, buffer, from, length, offset)
        Fiber.blocking { __fill__(buffer, length, offset) { |want, done| __pread__(io, want, from + done) } }
      rescue SystemCallError => e
        -e.errno
      end

      # No `io_pwrite`: Ruby 3.3's IO#pwrite calls it from inside its
      # blocking region, without the GVL, where no Ruby code may run (checked
      # in Debian's 3.3.8 source; docs/scheduling.md). Without the hook Ruby
      # does the pwrite itself, at once, as the hook would for a file.
    end

    if RUBY_VERSION >= '3.4'
      # Work Ruby would run without the GVL goes to a worker thread.
      def blocking_operation_wait(work)
        Polyphony::ThreadPool.process(&work)
      end
    end

    # `Fiber.schedule { }`: a new child of the current fiber.
    def fiber(*args, **kwargs, &block)
      Kernel.raise ArgumentError, 'Fiber.schedule needs a block' unless block

      spin { block.call(*args, **kwargs) }
    end

    # Called by Ruby when the thread ends or the scheduler is replaced: the
    # fibers belong to the thread's fiber tree, which is shut down by then.
    def close
      nil
    end

    private

    # One pread: the String, nil at EOF.
    def __pread__(io, length, from)
      io.pread(length, from)
    rescue EOFError
      nil
    end

    # Fills `buffer` from `offset` with the chunks the block returns (given
    # the bytes still wanted and those taken so far) until `length` bytes are
    # there (one chunk if 0), the buffer is full, or the block returns nil
    # (EOF); the byte count.
    def __fill__(buffer, length, offset)
      room = buffer.size - offset
      total = 0
      while total < room
        chunk = yield(room - total, total) or break
        buffer.set_string(chunk, offset + total)
        total += chunk.bytesize
        break if total >= length
      end
      total
    end
  end
end
