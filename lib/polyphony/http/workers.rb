# frozen_string_literal: true

module Polyphony
  module HTTP
    # `workers: n`: n forked processes serving one shared listener, each
    # with its own backend. The parent supervises: a worker that dies is
    # replaced; TERM or INT is passed on to every worker (which stops
    # gracefully) and the parent returns once they have all exited.
    class Workers
      # Seconds between two starts of a worker that keeps dying at once.
      RESTART_DELAY = 0.5

      attr_reader :pids

      def initialize(count, &make_server)
        raise ArgumentError, 'workers: needs a positive count' unless count.is_a?(Integer) && count.positive?

        @count = count
        @make_server = make_server
        @pids = []
        @stopping = false
      end

      def run
        trap_signals
        @count.times { start_worker }
        until @pids.empty?
          pid, = ::Process.wait2(-1)
          next unless @pids.delete(pid)

          next if @stopping

          sleep RESTART_DELAY
          start_worker unless @stopping
        end
      rescue Errno::ECHILD
        nil
      ensure
        restore_signals
      end

      # Stops every worker (gracefully: TERM).
      def stop(signal = 'TERM')
        @stopping = true
        @pids.each do |pid|
          ::Process.kill(signal, pid)
        rescue Errno::ESRCH
          nil
        end
      end

      private

      def start_worker
        @pids << Polyphony.fork do
          server = @make_server.call
          Polyphony::HTTP.trap_stop(server)
          server.run
        end
      end

      def trap_signals
        @old = %w[TERM INT].to_h do |sig|
          [sig, trap(sig) { stop(@stopping ? 'KILL' : 'TERM') }]
        end
      end

      def restore_signals
        @old&.each { |sig, handler| trap(sig, handler || 'DEFAULT') }
      end
    end
  end
end
