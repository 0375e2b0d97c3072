# frozen_string_literal: true

require 'dalli'

# dalli (Debian's ruby-dalli) against a real memcached started for the run:
# its socket waits park only the calling fiber.
RSpec.describe 'dalli + memcached' do
  let(:server) { TestServers.memcached.join(':') }

  def monotonic
    Process.clock_gettime(Process::CLOCK_MONOTONIC)
  end

  it 'sets, gets and deletes, with a ticker fiber running' do
    client = Dalli::Client.new(server, socket_timeout: 2)
    ticks = 0
    ticker = spin { loop { ticks += 1; snooze } }
    client.set('polyphony:key', 'value')
    expect(client.get('polyphony:key')).to eq('value')
    client.delete('polyphony:key')
    expect(client.get('polyphony:key')).to be_nil
    expect(ticks).to be > 0
    ticker.stop
  ensure
    client&.close
  end

  it 'serves many fibers at once, each with its own connection' do
    clients = Array.new(20) { Dalli::Client.new(server, socket_timeout: 2) }
    t0 = monotonic
    values = Fiber.await(*clients.each_with_index.map do |c, i|
      spin do
        50.times { |j| c.set("polyphony:#{i}:#{j}", j) }
        (0...50).map { |j| c.get("polyphony:#{i}:#{j}") }.sum
      end
    end)
    expect(values).to eq([(0...50).sum] * 20)
    expect(monotonic - t0).to be < 5
  ensure
    clients&.each(&:close)
  end
end
