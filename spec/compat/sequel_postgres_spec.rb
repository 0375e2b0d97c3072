# frozen_string_literal: true

require 'polyphony/adapters/postgres'
require 'polyphony/adapters/sequel'

# Sequel (Debian's ruby-sequel) on PostgreSQL through pg, with the gem's
# fiber connection pool, against a throwaway server (spec/support/servers.rb).
RSpec.describe 'Sequel + pg + PostgreSQL' do
  let(:params) { TestServers.postgres }
  let(:db) do
    Sequel.connect(adapter: 'postgres', host: params[:host], port: params[:port], user: params[:user],
                   database: params[:dbname], max_connections: 3)
  end
  after { db.disconnect }

  it 'runs queries of many fibers on up to max_connections connections at once' do
    expect(db.pool).to be_a(Polyphony::FiberConnectionPool)
    t0 = monotonic
    pids, ticks = with_ticker do
      Fiber.await(Array.new(6) { spin { db['SELECT pg_backend_pid() AS pid, pg_sleep(0.3)'].first[:pid] } })
    end
    elapsed = monotonic - t0
    expect(pids.uniq.size).to eq(3)
    expect(db.pool.size).to eq(3)
    expect(elapsed).to be < 1.2 # one after another: 1.8 s; two rounds of 0.3 s at once
    expect(ticks).to be >= 20
  end

  it "keeps each fiber's transaction on its own connection" do
    db.create_table!(:polyphony_items) { Integer :n }
    inside = Polyphony::Event.new
    writer = spin do
      db.transaction do
        db[:polyphony_items].insert(n: 1)
        inside.signal
        sleep 0.2
      end
    end
    inside.await
    seen_outside = db[:polyphony_items].count # another fiber: another connection, not yet committed
    writer.await
    expect(seen_outside).to eq(0)
    expect(db[:polyphony_items].count).to eq(1)

    # A transaction whose block raises rolls back, and the connection serves on.
    expect do
      db.transaction do
        db[:polyphony_items].insert(n: 2)
        raise 'abort'
      end
    end.to raise_error(RuntimeError, 'abort')
    expect(db[:polyphony_items].select_map(:n)).to eq([1])
  ensure
    db.drop_table?(:polyphony_items)
  end

  it 'discards a connection left by an exception of the application or Timeout, keeps one after an SQL error' do
    db.pool.preconnect
    expect { db.synchronize { raise ArgumentError, 'app' } }.to raise_error(ArgumentError)
    expect(db.pool.size).to eq(2)
    expect { Timeout.timeout(0.2) { db['SELECT pg_sleep(3)'].all } }.to raise_error(Timeout::Error)
    expect(db.pool.size).to eq(1)
    expect { db['SELECT nonsense'].all }.to raise_error(Sequel::DatabaseError)
    expect(db.pool.size).to eq(1)
    expect(db['SELECT 3 AS three'].first[:three]).to eq(3)
  end

  it 'stops a fiber mid-query, discards its connection, and serves on' do
    db.pool.preconnect
    f = spin { db['SELECT pg_sleep(5)'].all }
    sleep 0.1
    t0 = monotonic
    f.stop
    f.await
    expect(monotonic - t0).to be < 1
    expect(db.pool.size).to eq(2)
    expect(Fiber.await(Array.new(3) { spin { db['SELECT 1 AS one'].first[:one] } })).to eq([1, 1, 1])
  end

  it 'times out a query with move_on_after, in the main fiber too' do
    ticks = 0
    ticker = spin { loop { ticks += 1; sleep 0.01 } }
    t0 = monotonic
    result = move_on_after(0.3) { db['SELECT pg_sleep(3)'].all }
    expect(result).to be_nil
    expect(monotonic - t0).to be < 1.5
    expect(ticks).to be >= 10
    # The next query neither waits for the abandoned one nor gets its error.
    t0 = monotonic
    expect(db['SELECT 2 AS two'].first[:two]).to eq(2)
    expect(monotonic - t0).to be < 1.5
  ensure
    ticker&.stop
  end
end
