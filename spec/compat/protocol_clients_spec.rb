# frozen_string_literal: true

require 'net/smtp'
require 'net/imap'
require 'resolv'

# Ruby's own protocol clients, unmodified — Net::SMTP, Net::IMAP (whose
# responses are read by a thread of its own) and Resolv's DNS client (UDP,
# waiting in IO.select) — against small fake servers that answer after a
# delay: N sessions in about the time of one, the data intact, other fibers
# running.
RSpec.describe 'Protocol clients against fake servers' do
  # A TCP server running `session` (given the connection) in a fiber per
  # connection; its port.
  def fake_tcp_server(&session)
    server = TCPServer.new('127.0.0.1', 0)
    @servers << server
    spin do
      loop do
        conn = server.accept
        spin do
          session.call(conn)
        rescue IOError, SystemCallError
          nil
        ensure
          conn.close
        end
      end
    end
    server.addr[1]
  end

  before { @servers = [] }
  after { @servers.each(&:close) }

  describe 'Net::SMTP' do
    # Greets after `delay`; keeps every message it is sent.
    def smtp_server(delay, inbox)
      fake_tcp_server do |conn|
        sleep delay
        conn << "220 fake ESMTP\r\n"
        envelope = { to: [] }
        while (line = conn.gets)
          conn << (line.match?(/\ADATA/i) ? smtp_data(conn, envelope, inbox) : smtp_reply(line, envelope))
          break if line.start_with?('QUIT')
        end
      end
    end

    # The reply to command `line` (any but DATA).
    def smtp_reply(line, envelope)
      case line
      when /\AEHLO/i then "250-fake\r\n250 8BITMIME\r\n"
      when /\AMAIL FROM:<(.*)>/i then envelope[:from] = Regexp.last_match(1) and "250 ok\r\n"
      when /\ARCPT TO:<(.*)>/i then envelope[:to] << Regexp.last_match(1) and "250 ok\r\n"
      when /\AQUIT/i then "221 bye\r\n"
      else "500 what\r\n"
      end
    end

    # DATA: takes the message, up to the line with a dot.
    def smtp_data(conn, envelope, inbox)
      conn << "354 go ahead\r\n"
      data = +''
      while (l = conn.gets) != ".\r\n"
        data << l
      end
      inbox << [envelope[:from], envelope[:to], data]
      "250 queued\r\n"
    end

    it 'sends 10 messages on 10 sessions at once, each intact, while a ticker ticks' do
      inbox = []
      port = smtp_server(0.3, inbox)
      t0 = monotonic
      _, ticks = with_ticker do
        Fiber.await(*Array.new(10) do |i|
          spin do
            Net::SMTP.start('127.0.0.1', port, 'client.test') do |smtp|
              smtp.send_message("Subject: #{i}\r\n\r\nbody #{i}\r\n", "a#{i}@test", "b#{i}@test")
            end
          end
        end)
      end
      expect(monotonic - t0).to be < 1.5 # one after another: 3 s
      expect(ticks).to be >= 10
      expect(inbox.sort).to eq(Array.new(10) do |i|
                                 ["a#{i}@test", ["b#{i}@test"], "Subject: #{i}\r\n\r\nbody #{i}\r\n"]
                               end.sort)
    end

    it 'raises its read timeout in the waiting fiber only' do
      port = smtp_server(5, [])
      smtp = Net::SMTP.new('127.0.0.1', port)
      smtp.read_timeout = 0.3
      t0 = monotonic
      error, ticks = with_ticker do
        smtp.start('client.test')
      rescue Net::ReadTimeout => e
        e
      end
      expect(error).to be_a(Net::ReadTimeout)
      expect(monotonic - t0).to be_between(0.25, 2)
      expect(ticks).to be >= 5
    end
  end

  describe 'Net::IMAP' do
    # Answers LOGIN after `delay`, SELECT with a mailbox of `exists`
    # messages, and LOGOUT.
    def imap_server(delay)
      fake_tcp_server do |conn|
        conn << "* OK [CAPABILITY IMAP4rev1] fake ready\r\n"
        while (line = conn.gets)
          tag, command, *args = line.split
          case command.upcase
          when 'CAPABILITY' then conn << "* CAPABILITY IMAP4rev1\r\n#{tag} OK done\r\n"
          when 'LOGIN'
            sleep delay
            conn << "#{tag} OK LOGIN as #{args[0]}\r\n"
          when 'SELECT' then conn << "* #{args[0].delete('"').size} EXISTS\r\n#{tag} OK [READ-WRITE] selected\r\n"
          when 'LOGOUT'
            conn << "* BYE see you\r\n#{tag} OK LOGOUT done\r\n"
            break
          else conn << "#{tag} BAD what\r\n"
          end
        end
      end
    end

    it 'logs 5 clients in at once, each reading its own answers, while a ticker ticks' do
      port = imap_server(0.3)
      t0 = monotonic
      results, ticks = with_ticker do
        Fiber.await(*Array.new(5) do |i|
          spin do
            imap = Net::IMAP.new('127.0.0.1', port: port)
            login = imap.login("user#{i}", 'secret').data.text
            imap.select('x' * (i + 1))
            exists = imap.responses['EXISTS'].last
            imap.logout
            imap.disconnect
            [login, exists]
          end
        end)
      end
      expect(monotonic - t0).to be < 1.5 # one after another: 1.5 s of LOGIN alone
      expect(ticks).to be >= 10
      expect(results).to eq(Array.new(5) { |i| ["LOGIN as user#{i}", i + 1] })
    end
  end

  describe 'Resolv::DNS over UDP' do
    # Answers every A query with 10.0.0.N (N: the query's number in the
    # name, "hostN.test") after `delay`, one fiber per query.
    def dns_server(delay)
      sock = UDPSocket.new
      sock.bind('127.0.0.1', 0)
      @servers << sock
      spin do
        loop do
          data, (_, port, host) = sock.recvfrom(512)
          spin do
            sleep delay
            sock.send(dns_reply(data), 0, host, port)
          end
        end
      end
      sock.addr[1]
    end

    def dns_reply(data)
      query = Resolv::DNS::Message.decode(data)
      name, = query.question.first
      reply = Resolv::DNS::Message.new(query.id)
      reply.qr = 1
      reply.rd = query.rd
      reply.ra = 1
      reply.add_question(name, Resolv::DNS::Resource::IN::A)
      n = name.to_s[/host(\d+)/, 1].to_i
      reply.add_answer(name, 60, Resolv::DNS::Resource::IN::A.new("10.0.0.#{n}"))
      reply.encode
    end

    it 'resolves 20 names at once, each its own answer, while a ticker ticks' do
      port = dns_server(0.3)
      t0 = monotonic
      addresses, ticks = with_ticker do
        Fiber.await(*Array.new(20) do |i|
          spin do
            Resolv::DNS.open(nameserver_port: [['127.0.0.1', port]]) do |dns|
              dns.timeouts = 3
              dns.getaddress("host#{i}.test").to_s
            end
          end
        end)
      end
      expect(addresses).to eq(Array.new(20) { |i| "10.0.0.#{i}" })
      expect(monotonic - t0).to be < 1.5 # one after another: 6 s
      expect(ticks).to be >= 10
    end

    it 'times out a query nobody answers, in the asking fiber only' do
      port = dns_server(10)
      t0 = monotonic
      error, ticks = with_ticker do
        Resolv::DNS.open(nameserver_port: [['127.0.0.1', port]]) do |dns|
          dns.timeouts = 0.3
          dns.getaddress('host1.test')
        end
      rescue Resolv::ResolvError => e
        e
      end
      expect(error).to be_a(Resolv::ResolvError)
      expect(monotonic - t0).to be_between(0.25, 2)
      expect(ticks).to be >= 5
    end
  end
end
