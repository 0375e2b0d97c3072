# frozen_string_literal: true

require 'net/http'

# WEBrick (Debian's ruby-webrick) run under the gem, in a child process: it
# serves requests concurrently and stops on SIGTERM and SIGINT as it does
# without the gem (it waits in IO.select, which parks only its fiber).
RSpec.describe 'WEBrick under polyphony' do
  def start_server
    r, w = IO.pipe
    code = <<~RUBY
      require 'polyphony'
      require 'webrick'
      server = WEBrick::HTTPServer.new(Port: 0, BindAddress: '127.0.0.1',
                                       Logger: WEBrick::Log.new(File::NULL), AccessLog: [])
      server.mount_proc('/') { |_req, res| sleep 0.2; res.body = 'ok' }
      $stdout.puts server.config[:Port]
      $stdout.flush
      server.start
    RUBY
    # stderr: the server's uncaught Interrupt report on SIGINT (as stock Ruby's).
    pid = Process.spawn(SpecHelpers::RUBY, '-I', SpecHelpers::LIB, '-e', code, out: w, err: File::NULL)
    w.close
    port = r.gets.to_i
    [pid, port]
  ensure
    r&.close
  end

  def exits_within(pid, secs)
    deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + secs
    loop do
      return true if Process.waitpid(pid, Process::WNOHANG)
      return false if Process.clock_gettime(Process::CLOCK_MONOTONIC) > deadline

      sleep 0.02
    end
  end

  it 'serves requests concurrently' do
    pid, port = start_server
    t0 = Process.clock_gettime(Process::CLOCK_MONOTONIC)
    bodies = Array.new(10) { Thread.new { Net::HTTP.get(URI("http://127.0.0.1:#{port}/")) } }.map(&:value)
    expect(bodies).to eq(['ok'] * 10)
    # WEBrick serves each connection on a thread of its own: 10 × 0.2 s in
    # well under the 2 s they would take one after another.
    expect(Process.clock_gettime(Process::CLOCK_MONOTONIC) - t0).to be < 1.5
  ensure
    if pid && !exits_within(pid, 0)
      Process.kill('KILL', pid)
      Process.wait(pid)
    end
  end

  %w[TERM INT].each do |signal|
    it "stops on SIG#{signal} at once" do
      pid, port = start_server
      expect(Net::HTTP.get(URI("http://127.0.0.1:#{port}/"))).to eq('ok')
      Process.kill(signal, pid)
      expect(exits_within(pid, 2)).to be(true), "still running 2 s after SIG#{signal}"
      pid = nil
    ensure
      if pid
        Process.kill('KILL', pid)
        Process.wait(pid)
      end
    end
  end
end
