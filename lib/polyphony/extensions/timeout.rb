# frozen_string_literal: true

require 'timeout'

# `Timeout.timeout` made fiber-aware: only the calling fiber
# is interrupted, at a switchpoint; the block receives `sec` as in stdlib.
module ::Timeout
  class << self
    alias orig_timeout timeout
  end

  # `sec` nil or 0: no timeout. Otherwise raises `klass` (Timeout::Error)
  # with `message` ("execution expired") in the block once `sec` seconds
  # have passed. Nested timeouts unwind to their own level.
  def timeout(sec, klass = nil, message = nil, &block)
    return yield(sec) if sec.nil?

    Kernel.raise TypeError, "can't convert #{sec.class} into time interval" unless sec.is_a?(Numeric)
    return yield(sec) if sec.zero?

    message ||= 'execution expired'
    klass ||= ::Timeout::Error
    Thread.current.backend.timeout(sec, [klass, message]) { block.call(sec) }
  end
  module_function :timeout
end
