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
end
