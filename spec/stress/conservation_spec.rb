# frozen_string_literal: true

require 'socket'

# Races of stops, raises, cancels and timeouts against in-flight reads,
# checked for conservation after every round (docs/io-semantics.md): every
# byte written is read exactly once, in order, by the intended reader; fds,
# pending operations and kept bytes go back to their baseline. Seeded:
# STRESS_SEED=n reproduces a run.
STRESS_SEED = Integer(ENV.fetch('STRESS_SEED', Random.new_seed % 100_000))
# A custom error, so that an exception reaching the wrong fiber shows.
class StressError < StandardError; end

RSpec.describe 'Conservation under cancellation (stress)' do
  before(:all) { puts "stress seed: #{STRESS_SEED} (STRESS_SEED=#{STRESS_SEED} reproduces it)" }

  def fd_count
    Dir.children('/proc/self/fd').size
  end

  def pair(kind)
    case kind
    when :pipe then IO.pipe
    when :unix then UNIXSocket.pair
    when :tcp
      server = TCPServer.new('127.0.0.1', 0)
      client = TCPSocket.new('127.0.0.1', server.addr[1])
      conn = server.accept
      server.close
      [conn, client]
    end
  end

  # The bytes of messages 0...n: each message is its index and a run of
  # bytes derived from it, so a lost, repeated or reordered chunk shows.
  def payload(rng, count)
    Array.new(count) { |i| "<#{i}:#{(97 + (i % 26)).chr * rng.rand(1..3000)}>" }
  end

  # Reads everything with reader fibers that are interrupted at random; each
  # reader appends what it got. Returns the bytes read.
  def interrupted_read(reader, total, rng) # rubocop:disable Metrics/MethodLength
    got = +''
    got.force_encoding(Encoding::BINARY)
    until got.bytesize >= total
      f = spin do
        loop { got << reader.readpartial(rng.rand(1..4096)) }
      rescue StressError
        nil
      end
      rng.rand(0..3).times { snooze }
      case rng.rand(4)
      when 0 then f.stop
      when 1 then f.raise(StressError)
      when 2 then f.cancel
      else move_on_after(rng.rand * 0.002) { f.await }
      end
      f.stop
      begin
        f.await
      rescue Polyphony::Cancel, StressError
        nil
      end
    end
    got
  end

  %i[pipe unix tcp].each do |kind|
    it "reads every byte once and in order through interrupted readers (#{kind})" do
      rng = Random.new(STRESS_SEED)
      fds = fd_count
      pending = backend.pending_count
      8.times do
        r, w = pair(kind)
        data = payload(rng, rng.rand(20..120)).join.b
        writer = spin do
          off = 0
          while off < data.bytesize
            n = rng.rand(1..8192)
            w.write(data.byteslice(off, n))
            off += n
            snooze if rng.rand(3).zero?
          end
        end
        got = interrupted_read(r, data.bytesize, rng)
        writer.await
        expect(got.bytesize).to eq(data.bytesize)
        expect(got).to eq(data)
        r.close
        w.close
      end
      expect(Polyphony.__kept_count__).to eq(0)
      expect(backend.pending_count).to eq(pending)
      expect(fd_count).to eq(fds)
    end
  end

  it 'serves or closes every connection while acceptors are stopped at random' do
    rng = Random.new(STRESS_SEED + 1)
    fds = fd_count
    server = TCPServer.new('127.0.0.1', 0)
    port = server.addr[1]
    count = 200
    # Clients in a plain Ruby process (no polyphony, no shared GVL): each
    # sends its number and expects it back.
    script = <<~RUBY
      require 'socket'
      #{count}.times do |i|
        s = TCPSocket.new('127.0.0.1', #{port})
        s.write("\#{i}\\n")
        puts(s.gets&.chomp || 'lost')
        s.close
      end
    RUBY
    clients = IO.popen([SpecHelpers::RUBY, '-e', script])
    served = 0
    # Handlers are children of this fiber, not of the acceptor: stopping an
    # acceptor must not stop the connections it handed on.
    owner = Fiber.current
    handlers = []
    while served < count
      acceptor = spin do
        loop do
          conn = server.accept
          served += 1
          handlers << owner.spin do
            conn.write(conn.gets)
          ensure
            conn.close
          end
        end
      end
      rng.rand(1..4).times { snooze }
      sleep(rng.rand * 0.002) if rng.rand(2).zero?
      acceptor.stop
      acceptor.await
    end
    Fiber.await(*handlers)
    expect(clients.read.split("\n")).to eq(Array.new(count, &:to_s))
    clients.close
    server.close
    expect(Polyphony.__kept_count__).to eq(0)
    expect(fd_count).to eq(fds)
  end

  it 'ends a waiting reader once when its IO is closed by another fiber or thread, racing a stop' do
    rng = Random.new(STRESS_SEED + 2)
    fds = fd_count
    60.times do
      r, w = pair(%i[pipe unix].sample(random: rng))
      outcome = :none
      f = spin do
        r.readpartial(10)
        outcome = :data
      rescue IOError
        outcome = :closed
      end
      snooze
      stopped = rng.rand(2).zero?
      f.stop if stopped
      if rng.rand(2).zero?
        Thread.new { r.close }.join
      else
        spin { r.close }.await
      end
      f.await
      # A stop stands (nothing more reaches the fiber); otherwise the close
      # ends the read with IOError. Never data: none was written.
      expect(outcome).to eq(stopped ? :none : :closed)
      w.close
    end
    expect(backend.pending_count).to eq(0)
    expect(fd_count).to eq(fds)
  end

  it 'unwinds every nested deadline to its own scope' do
    rng = Random.new(STRESS_SEED + 3)
    40.times do
      outer = rng.rand(1..10) / 1000.0
      inner = rng.rand(1..10) / 1000.0
      reached = nil
      r = move_on_after(outer, with_value: :outer) do
        reached = move_on_after(inner, with_value: :inner) do
          t = monotonic
          nil while monotonic - t < 0.012
          sleep 1
        end
        sleep 1
        :none
      end
      # Both deadlines passed during the busy loop. The earlier one wins:
      # an earlier outer one unwinds straight through the inner scope; an
      # earlier inner one returns there, then the outer one fires.
      expect(r).to eq(:outer)
      expect(reached).to be_nil if outer < inner
      expect(reached).to eq(:inner) if inner < outer
    end
  end

  it 'conserves bytes through interrupted reads under GC.stress' do
    rng = Random.new(STRESS_SEED + 4)
    r, w = UNIXSocket.pair
    data = payload(rng, 4).join.b
    begin
      GC.stress = true
      writer = spin { w.write(data) }
      got = interrupted_read(r, data.bytesize, rng)
      writer.await
    ensure
      GC.stress = false
    end
    expect(got).to eq(data)
    r.close
    w.close
  end

  # A write is never half-undone: what reaches the reader is, write after
  # write in order, the whole message of each write that returned and a
  # prefix (maybe empty) of each write that was interrupted. Consecutive
  # messages start with different bytes, so a prefix is never mistaken for
  # the start of the next message.
  %i[unix tcp].each do |kind|
    it "keeps the stream whole through writers interrupted at random (#{kind})" do
      rng = Random.new(STRESS_SEED + 5)
      fds = fd_count
      r, w = pair(kind)
      msgs = Array.new(150) { |i| "#{(65 + (i % 26)).chr}#{i}:#{'z' * rng.rand(1..20_000)}|".b }
      received = +''.b
      reader = spin { r.read_loop { |chunk| received << chunk } }
      whole = msgs.map do |m|
        done = false
        f = spin do
          w.write(m)
          done = true
        end
        rng.rand(0..2).times { snooze }
        case rng.rand(3)
        when 0 then f.raise(StressError)
        when 1 then f.stop
        end
        begin
          f.await
        rescue StressError
          nil
        end
        done
      end
      w.close
      reader.await
      pos = 0
      msgs.zip(whole).each do |m, done|
        if done
          expect(received.byteslice(pos, m.bytesize)).to eq(m)
          pos += m.bytesize
        else
          n = 0
          n += 1 while n < m.bytesize && received.getbyte(pos + n) == m.getbyte(n)
          pos += n
        end
      end
      expect(pos).to eq(received.bytesize)
      expect(whole.count(true)).to be_between(1, 149)
      r.close
      expect(fd_count).to eq(fds)
    end
  end

  it 'leaves no half-made connection behind connects given up at random' do
    rng = Random.new(STRESS_SEED + 6)
    fds = fd_count
    server = TCPServer.new('127.0.0.1', 0)
    addr = Socket.sockaddr_in(server.addr[1], '127.0.0.1')
    made = 0
    socks = []
    80.times do
      sock = Socket.new(:INET, :STREAM)
      socks << sock
      f = spin do
        sock.connect(addr)
        sock.write('x')
        made += 1
      end
      rng.rand(0..2).times { snooze }
      f.stop if rng.rand(2).zero?
      f.await
    end
    # Every connection the server sees carries a byte if, and only if, its
    # client's connect returned; the others end at once (dissolved).
    greeted = 0
    while (conn = server.accept_nonblock(exception: false)).is_a?(Socket) || conn.is_a?(TCPSocket)
      data = move_on_after(1) { conn.read(1) }
      greeted += 1 if data == 'x'
      conn.close
    end
    expect(greeted).to eq(made)
    socks.each(&:close)
    server.close
    expect(fd_count).to eq(fds)
  end
end
