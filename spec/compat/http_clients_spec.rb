# frozen_string_literal: true

require 'net/http'
require 'faraday'
require 'httpclient'
require 'http'
require 'excon'
require 'tempfile'

# Each client: a GET of `path` returning the body, with optional read and
# connect timeouts, and the errors it raises for them.
module HTTPClientsUnderTest
  ALL = {
    'Net::HTTP' => {
      get: lambda do |port, path, read: nil, open: nil|
        http = Net::HTTP.new('127.0.0.1', port)
        http.read_timeout = read if read
        http.open_timeout = open if open
        http.start { http.get(path).body }
      end,
      read_error: Net::ReadTimeout, open_error: Net::OpenTimeout
    },
    'Faraday (net_http adapter)' => {
      get: lambda do |port, path, read: nil, open: nil|
        conn = Faraday.new(url: "http://127.0.0.1:#{port}") do |f|
          f.options.timeout = read if read
          f.options.open_timeout = open if open
          f.adapter :net_http
        end
        conn.get(path).body
      end,
      read_error: Faraday::TimeoutError, open_error: Faraday::ConnectionFailed
    },
    'httpclient' => {
      get: lambda do |port, path, read: nil, open: nil|
        client = HTTPClient.new
        client.receive_timeout = read if read
        client.connect_timeout = open if open
        client.get_content("http://127.0.0.1:#{port}#{path}")
      ensure
        client&.reset_all
      end,
      read_error: HTTPClient::ReceiveTimeoutError, open_error: HTTPClient::ConnectTimeoutError
    },
    'http.rb' => {
      get: lambda do |port, path, read: nil, open: nil|
        HTTP.timeout(connect: open || 30, read: read || 30, write: 30).get("http://127.0.0.1:#{port}#{path}").to_s
      end,
      read_error: HTTP::TimeoutError, open_error: HTTP::TimeoutError
    },
    'excon' => {
      get: lambda do |port, path, read: nil, open: nil|
        Excon.get("http://127.0.0.1:#{port}#{path}", read_timeout: read || 30, connect_timeout: open || 30).body
      end,
      read_error: Excon::Error::Timeout, open_error: Excon::Error::Timeout
    }
  }.freeze
end

# The HTTP clients people use (Debian's ruby-faraday, ruby-httpclient,
# ruby-http, ruby-excon, and stdlib Net::HTTP), unmodified, against a WEBrick
# server in a child process without the gem: requests run concurrently, and
# their timeouts fire in the requesting fiber only, on time, and never
# spuriously when a response arrived while another fiber held the CPU.
RSpec.describe 'HTTP clients against a real server' do
  # A WEBrick server (threads, no gem) in a child process: GET /sleep/<ms>
  # answers "slept <ms>" after that long.
  before(:all) do
    r, w = IO.pipe
    code = <<~RUBY
      require 'webrick'
      server = WEBrick::HTTPServer.new(Port: 0, BindAddress: '127.0.0.1', MaxClients: 200,
                                       Logger: WEBrick::Log.new(File::NULL), AccessLog: [])
      server.mount_proc('/sleep') do |req, res|
        ms = req.path.split('/').last.to_i
        sleep ms / 1000.0
        res.body = "slept \#{ms}"
      end
      trap(:TERM) { server.shutdown }
      $stdout.puts server.config[:Port]
      $stdout.flush
      server.start
    RUBY
    @server_log = Tempfile.new('webrick')
    @server_pid = Process.spawn(SpecHelpers::RUBY, '-e', code, out: w, err: @server_log.path)
    w.close
    @port = r.gets.to_i
    raise "the WEBrick server did not start:\n#{File.read(@server_log.path)}" if @port.zero?
  ensure
    r&.close
  end

  after(:all) do
    if @server_pid
      Process.kill(:TERM, @server_pid)
      Process.wait(@server_pid)
    end
    @server_log&.close!
  end

  # A port whose connects never complete: a listener with a backlog of 0,
  # filled by one connection that is never accepted.
  def blackhole
    listener = Socket.new(:INET, :STREAM)
    listener.bind(Addrinfo.tcp('127.0.0.1', 0))
    listener.listen(0)
    filler = Socket.new(:INET, :STREAM)
    begin
      filler.connect_nonblock(listener.local_address)
    rescue IO::WaitWritable
      filler.wait_writable(1)
    end
    yield listener.local_address.ip_port
  ensure
    filler&.close
    listener&.close
  end

  HTTPClientsUnderTest::ALL.each do |name, client|
    describe name do
      let(:get) { client[:get] }

      it 'runs 20 requests to a 0.3 s server in about the time of one, while a ticker ticks' do
        t0 = monotonic
        bodies, ticks = with_ticker do
          Fiber.await(*Array.new(20) { spin { get.call(@port, '/sleep/300') } })
        end
        elapsed = monotonic - t0
        expect(bodies).to eq(['slept 300'] * 20)
        expect(elapsed).to be < 1.5 # one after another: 6 s
        expect(ticks).to be >= 10
      end

      it 'raises its read timeout in the requesting fiber only, on time' do
        other = spin { get.call(@port, '/sleep/300') }
        t0 = monotonic
        error, ticks = with_ticker do
          get.call(@port, '/sleep/3000', read: 0.3)
        rescue client[:read_error] => e
          e
        end
        expect(error).to be_a(client[:read_error])
        expect(monotonic - t0).to be_between(0.25, 2)
        expect(ticks).to be >= 5
        expect(other.await).to eq('slept 300')
      end

      it 'raises its connect timeout in the connecting fiber only, on time' do
        blackhole do |port|
          t0 = monotonic
          error, ticks = with_ticker do
            get.call(port, '/', open: 0.3)
          rescue client[:open_error] => e
            e
          end
          expect(error).to be_a(client[:open_error])
          expect(monotonic - t0).to be_between(0.25, 2)
          expect(ticks).to be >= 5
        end
      end

      it 'does not time out a response that arrived while another fiber held the CPU' do
        requests = Array.new(10) { spin { get.call(@port, '/sleep/100', read: 0.5) } }
        sleep 0.05 # the requests are sent and waiting
        # 1 s without a switchpoint: each response is there after 0.1 s and
        # each read timeout expired too when the requests' fibers run again.
        start = monotonic
        nil while monotonic - start < 1
        expect(Fiber.await(*requests)).to eq(['slept 100'] * 10)
      end
    end
  end
end
