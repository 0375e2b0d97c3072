# frozen_string_literal: true

# Exception extensions: fiber provenance and exception-spec normalisation.
class ::Exception
  # The fiber in which the exception was uncaught (set when it escapes).
  attr_accessor :source_fiber

  # The fiber that was current when the exception was raised into it.
  attr_accessor :raising_fiber

  class << self
    attr_accessor :__disable_sanitized_backtrace__

    # Normalises an exception spec: String → RuntimeError, [klass, msg] →
    # klass.new(msg), Class → klass.new(message), instance → itself.
    # TypeError for a class that is not an exception class, or an object
    # that is neither an exception, a class, a message nor nil (as
    # `Kernel#raise`).
    def instantiate(error = nil, message = nil)
      case error
      when Exception then error
      when String then RuntimeError.new(error)
      when Array then instantiate(*error)
      when Class then __instantiate_class__(error, message)
      when nil then RuntimeError.new
      else Kernel.raise TypeError, 'exception class/object expected'
      end
    end

    private

    def __instantiate_class__(klass, message)
      Kernel.raise TypeError, 'exception class/object expected' unless klass <= Exception

      message.nil? ? klass.new : klass.new(message)
    end
  end

  # Raises the exception (overridden by Polyphony::Interjection).
  def invoke
    Kernel.raise(self)
  end
end
