# frozen_string_literal: true

require 'socket'

# The rule of docs/io-semantics.md: every operation ends exactly once,
# delivered to the fiber that asked, or undone (given back to its owner).
# Each example failed on the code before that rule (io_uring, epoll or both).
RSpec.describe 'Cancellation at the kernel boundary (docs/io-semantics.md)' do
  def fd_count
    Dir.children('/proc/self/fd').size
  end

  describe 'bytes taken by a read whose fiber gave up' do
    it 'never reach another socket that reuses the fd number (close from another thread)' do
      a, b = UNIXSocket.pair
      f = spin { a.readpartial(99) }
      snooze
      b.write('SECRET')
      f.stop
      snooze
      fileno = a.fileno
      Thread.new { a.close }.join
      c, d = UNIXSocket.pair
      expect(c.fileno).to eq(fileno)
      d.write('new')
      expect(c.readpartial(99)).to eq('new')
    ensure
      [b, c, d].each { |s| s&.close unless s&.closed? }
    end

    it 'are read exactly once, by the next read of the same IO' do
      a, b = UNIXSocket.pair
      f = spin { a.readpartial(99) }
      snooze
      b.write('first')
      f.stop
      got = f.await
      b.write('second')
      rest = +''
      rest << a.readpartial(99) while rest.size + (got&.size || 0) < 11
      expect("#{got}#{rest}").to eq('firstsecond')
    ensure
      a&.close
      b&.close
    end

    # The non-blocking reads (`read_nonblock`, `recv_nonblock`) serve them
    # first too, and the readiness checks see them. (Kept by hand: whether
    # a read being cancelled had already got its bytes is the kernel's
    # choice.)
    %i[read_nonblock recv_nonblock wait_readable select].each do |how|
      it "come first for #{how} (kept by hand)" do
        a, b = UNIXSocket.pair
        a.__send__(:__keep_bytes__, 'first')
        case how
        when :wait_readable then expect(a.wait_readable(0)).to eq(a)
        when :select then expect(IO.select([a], nil, nil, 0)).to eq([[a], [], []]) # rubocop:disable Lint/IncompatibleIoSelectWithFiberScheduler
        end
        b.write('second')
        sleep 0.01
        got = +''
        got << (how == :recv_nonblock ? a.recv_nonblock(99) : a.read_nonblock(99)) while got.size < 11
        expect(got).to eq('firstsecond')
        expect(Polyphony.__kept_count__).to eq(0)
      ensure
        a&.close
        b&.close
      end
    end

    it 'die with reopen, close_read and GC of the IO' do
      %i[reopen close_read gc].each do |how|
        a, b = UNIXSocket.pair
        f = spin { a.readpartial(99) }
        snooze
        b.write('OLD')
        f.stop
        kept = f.await.nil? # io_uring: undone, kept on `a`; epoll: delivered
        case how
        when :reopen
          c, d = UNIXSocket.pair
          a.reopen(c)
          d.write('new')
          expect(a.readpartial(99)).to eq('new')
          [c, d].each(&:close)
        when :close_read
          a.close_read
          expect { a.readpartial(99) }.to raise_error(IOError)
        when :gc
          a = nil
          GC.start
          c, d = UNIXSocket.pair
          d.write('new')
          expect(c.readpartial(99)).to eq('new')
          [c, d].each(&:close)
        end
        expect(Polyphony.__kept_count__).to eq(0) if kept && how != :gc
      ensure
        a&.close
        b&.close
      end
    end

    it 'are delivered when the exception arrives at the switchpoint after a read that got them' do
      r, w = IO.pipe
      w.write('b')
      f = spin { r.readpartial(9) }
      spin { f.raise(IOError) }
      first = begin
        f.await
      rescue IOError
        nil
      end
      second = move_on_after(0.2) { r.readpartial(9) }
      expect([first, second].compact).to eq(['b'])
    ensure
      r&.close
      w&.close
    end

    it 'never come back twice (a pipe never written again)' do
      r, w = IO.pipe
      w.write('b')
      f = spin { r.readpartial(9) }
      spin { f.raise(IOError) }
      got = [(f.await rescue nil)] # rubocop:disable Style/RescueModifier
      3.times { got << move_on_after(0.05) { r.readpartial(9) } }
      expect(got.compact).to eq(['b'])
    ensure
      r&.close
      w&.close
    end

    it 'stay out of a buffer that was shortened while the read was in flight' do
      r, w = IO.pipe
      buf = +'x' * 100
      f = spin { Polyphony.backend_read(r, buf, 5, false, 100) }
      snooze
      buf.clear
      w.write('hello')
      f.await
      expect(buf).to eq('hello')
    ensure
      r&.close
      w&.close
    end

    # Another fiber freezes (or locks) the caller's String while the read
    # waits: the read raises what writing it would raise, and the bytes the
    # kernel may already have read stay with the IO for its next read.
    { 'frozen' => [FrozenError, ->(s) { s.freeze }],
      'dup-then-frozen' => [FrozenError, ->(s) { s.dup.freeze && s.freeze }] }.each do |what, (error, change)|
      it "raises #{error} and keeps the bytes when the buffer is #{what} while the read waits" do
        r, w = IO.pipe
        buf = +'x' * 100
        f = spin { r.readpartial(50, buf) }
        snooze
        change.call(buf)
        w.write('hello')
        expect { f.await }.to raise_error(error)
        expect(buf).to eq('')
        expect(r.readpartial(50)).to eq('hello')
      ensure
        r&.close
        w&.close
      end
    end

    it 'raises FrozenError for a buffer frozen mid-read, keeping the bytes, under GC.stress' do
      r, w = IO.pipe
      buf = +'x' * 100
      GC.stress = true
      begin
        f = spin { r.readpartial(50, buf) }
        snooze
        buf.freeze
        w.write('stress')
        error = begin
          f.await
        rescue FrozenError => e
          e
        end
        again = r.readpartial(50)
      ensure
        GC.stress = false
      end
      expect(error).to be_a(FrozenError)
      expect(again).to eq('stress')
    ensure
      r&.close
      w&.close
    end

    it 'leaves a copy made while the read waits untouched' do
      r, w = IO.pipe
      buf = +'x' * 100
      f = spin { Polyphony.backend_read(r, buf, 28, false, 100) }
      snooze
      copy = buf.dup
      w.write('y' * 28)
      f.await
      expect(buf).to eq(('x' * 100) + ('y' * 28))
      expect(copy).to eq('x' * 100)
    ensure
      r&.close
      w&.close
    end
  end

  describe 'accept' do
    it 'hands a connection accepted after its fiber gave up to the next accept of that server' do
      server = TCPServer.new('127.0.0.1', 0)
      port = server.addr[1]
      before = fd_count
      clients = []
      served = 0
      50.times do
        f = spin { server.accept }
        snooze
        clients << TCPSocket.new('127.0.0.1', port)
        f.stop # races with the kernel's accept
        conn = f.await || server.accept
        conn.write('ok')
        served += 1 if clients.last.read(2) == 'ok'
        conn.close
      end
      expect(served).to eq(50)
      clients.each(&:close)
      expect(fd_count).to eq(before)
      expect(Polyphony.__kept_count__).to eq(0)
    ensure
      server&.close
    end

    it 'closes kept connections with the server' do
      server = TCPServer.new('127.0.0.1', 0)
      port = server.addr[1]
      before = fd_count
      clients = 20.times.map do
        f = spin { server.accept }
        snooze
        c = TCPSocket.new('127.0.0.1', port)
        f.stop
        (conn = f.await) && conn.close
        c
      end
      server.close
      server = nil
      # Every client sees its connection end (served-and-closed or closed
      # unserved): none is left hanging.
      ends = clients.map { |c| move_on_after(2) { c.read(1) } || :eof }
      expect(ends).to all(eq(:eof))
      clients.each(&:close)
      expect(fd_count).to eq(before - 1) # the server's own fd is closed too
    ensure
      server&.close
    end
  end

  describe 'connect' do
    it 'dissolves a connection given up on, so the socket can connect again' do
      server = TCPServer.new('127.0.0.1', 0)
      addr = Socket.sockaddr_in(server.addr[1], '127.0.0.1')
      sock = Socket.new(:INET, :STREAM)
      f = spin { sock.connect(addr) }
      f.stop
      f.await
      expect { sock.connect(addr) }.not_to raise_error
      conn = server.accept
      sock.write('hi')
      expect(conn.readpartial(2)).to eq('hi')
    ensure
      [conn, sock, server].each { |s| s&.close }
    end
  end

  describe 'timers against completed operations' do
    it 'do not overrule a completed readiness wait (wait_readable on a readable pipe)' do
      r, w = IO.pipe
      w.write('x')
      res = :unset
      f = spin { res = r.wait_readable(0.05) }
      spin { t = monotonic; nil while monotonic - t < 0.2 }
      f.await
      expect(res).to equal(r)
    ensure
      r&.close
      w&.close
    end

    it 'let the earliest of nested deadlines win when both pass before the fiber runs' do
      t0 = monotonic
      r = move_on_after(0.01, with_value: :outer) do
        move_on_after(0.02) do
          t = monotonic
          nil while monotonic - t < 0.05
          sleep 1
        end
        sleep 0.5
        :outer_deadline_lost
      end
      expect(r).to eq(:outer)
      expect(monotonic - t0).to be < 0.4
    end

    it 'keep an outer deadline armed while an explicit raise is handled inside it' do
      t0 = monotonic
      f = Fiber.current
      r = move_on_after(0.02, with_value: :outer) do
        spin do
          t = monotonic
          nil while monotonic - t < 0.05
          f.raise(ArgumentError)
        end
        begin
          sleep 1
        rescue ArgumentError
          nil
        end
        sleep 1
        :deadline_lost
      end
      expect(r).to eq(:outer)
      expect(monotonic - t0).to be < 0.8
    end
  end

  # `Backend#__read_within__`: a read with its own deadline (the HTTP
  # server's wait between requests).
  describe 'a read with a deadline' do
    def read_within(io, buf, secs) = Thread.current.backend.__send__(:__read_within__, io, buf, 99, buf.bytesize, secs)

    it 'gives false at the deadline, the bytes before it, and leaves no deadline behind' do
      a, b = UNIXSocket.pair
      t = monotonic
      expect(read_within(a, +'', 0.05)).to be(false)
      expect(monotonic - t).to be >= 0.04
      b.write('x')
      buf = +''
      expect(read_within(a, buf, 5)).to equal(buf)
      expect(buf).to eq('x')
      spin { sleep 0.02; b.write('y') }
      expect(read_within(a, buf, 0.5)).to equal(buf)
      expect(buf).to eq('xy')
      expect { sleep 0.6 }.not_to raise_error # no marker raised later
    ensure
      a&.close
      b&.close
    end

    it 'loses and duplicates no byte when the bytes and the deadline meet (300 races)' do
      a, b = UNIXSocket.pair
      got = +''
      sent = +''
      300.times do |i|
        msg = "<#{i}>"
        sent << msg
        spin { sleep(rand * 0.002); b.write(msg) }
        r = read_within(a, got, 0.001)
        got << a.read_nonblock(99) if r == false && a.wait_readable(0.5)
        got << a.read_nonblock(99) while got.size < sent.size && a.wait_readable(0.5)
        expect(got).to eq(sent)
      end
      expect(Polyphony.__kept_count__).to eq(0)
    ensure
      a&.close
      b&.close
    end
  end

  describe 'a close racing a stop' do
    it 'does not replace a stop (await returns what a stop returns)' do
      s = TCPServer.new('127.0.0.1', 0)
      f = spin { s.accept }
      snooze
      f.stop
      s.close
      expect(f.await).to be_nil
    end

    it 'does not replace a raise' do
      s = TCPServer.new('127.0.0.1', 0)
      f = spin { s.accept }
      snooze
      f.raise(ArgumentError)
      s.close
      expect { f.await }.to raise_error(ArgumentError)
    end
  end

  describe 'bad input raises, never panics' do
    it 'raises ThreadError for a backend used from another thread' do
      q = Thread::Queue.new
      t = Thread.new do
        q << Thread.current.backend
        sleep 0.3
      end
      b = q.shift
      expect { b.sleep(0.01) }.to raise_error(ThreadError)
      expect { b.read($stdin, nil, 1, false, 0) }.to raise_error(ThreadError)
      expect { b.finalize }.to raise_error(ThreadError)
      expect(b.kind).to eq(backend.kind)
      t.join
    end

    it 'raises TypeError for a non-exception class given to a timeout' do
      expect { Timeout.timeout(0.001, String) { sleep 1 } }.to raise_error(TypeError)
      expect { cancel_after(0.001, with_exception: String) { sleep 1 } }.to raise_error(TypeError)
      expect { cancel_after(0.001, with_exception: String) { |_c| sleep 1 } }.to raise_error(TypeError)
      expect { Timeout.timeout(true) { 1 } }.to raise_error(TypeError)
    end

    it 'writes an object whose to_s is not a String as stock IO#write does' do
      o = Object.new
      def o.to_s = 42
      r, w = IO.pipe
      expect(w.write(o)).to eq(o.inspect.size)
      expect(Polyphony.backend_write(w, o)).to eq(o.inspect.size)
      w.close
      expect(r.read).to eq(Object.instance_method(:to_s).bind_call(o) * 2)
    ensure
      r&.close
    end

    it 'takes huge queue capacities in constant time' do
      t = monotonic
      q = Polyphony::Queue.new(2**31)
      q.cap(2**40)
      q << 1
      q.clear
      q.delete(1)
      expect(monotonic - t).to be < 0.5
    end

    it 'refuses fiber parent cycles' do
      f = spin { sleep 0.01 }
      g = f.spin { sleep 0.01 }
      expect { f.add_child(f) }.to raise_error(ArgumentError)
      expect { g.add_child(f) }.to raise_error(ArgumentError)
      expect { f.attach_to(nil) }.to raise_error(TypeError)
      expect(Fiber.await(f, g)).to eq([nil, nil])
    end

    it 'raises ECHILD for waitpid of a process that is not a child' do
      expect { backend.waitpid(1) }.to raise_error(Errno::ECHILD)
    end

    it 'refuses to kill a process group or every process' do
      expect { Polyphony.kill_process(0) }.to raise_error(ArgumentError)
      expect { Polyphony.kill_process(-1) }.to raise_error(ArgumentError)
    end
  end

  describe 'fork' do
    it 'leaves the child no copy of the parent ring or epoll fds, and none of its kept bytes' do
      a, b = UNIXSocket.pair
      f = spin { a.readpartial(99) }
      snooze
      b.write('P')
      f.stop
      delivered = f.await
      kept = Polyphony.__kept_count__ == 1 # io_uring: undone; epoll: never read
      rd, wr = IO.pipe
      pid = fork do
        rd.close
        fds = Dir.children('/proc/self/fd').map { |x| File.readlink("/proc/self/fd/#{x}") rescue nil } # rubocop:disable Style/RescueModifier
        rings = fds.count { |l| l.to_s =~ /io_uring|eventpoll/ }
        got = move_on_after(0.2) { a.readpartial(99) }
        wr.write(Marshal.dump([rings, got]))
        wr.close
        exit!(0)
      end
      wr.close
      rings, got = Marshal.load(rd.read) # rubocop:disable Security/MarshalLoad
      Process.wait(pid)
      # Only the child's own new ring (or epoll instance), besides what Ruby
      # itself has in a forked child (Ruby 3.3's timer thread has an epoll fd).
      ruby_own, = run_ruby(<<~'RUBY')
        r, w = IO.pipe
        pid = fork do
          n = Dir.children('/proc/self/fd').count { |x| File.readlink("/proc/self/fd/#{x}") =~ /io_uring|eventpoll/ rescue false }
          w.write(n.to_s)
          exit!(0)
        end
        w.close
        print r.read
        Process.wait(pid)
      RUBY
      expect(ruby_own).to match(/\A\d+\z/)
      expect(rings).to eq(ruby_own.to_i + 1)
      if kept
        expect(got).to be_nil # the parent's kept bytes are not the child's
        expect(a.readpartial(99)).to eq('P')
      else
        expect([delivered, got].compact).to eq(['P'])
      end
    ensure
      [a, b, rd].each { |s| s&.close unless s&.closed? }
    end
  end
end
