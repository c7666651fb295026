namespace Shepherd.Engine.Configuration;

/// <summary>The configuration file is wrong; the message says where and how.</summary>
public sealed class ConfigException : Exception
{
    /// <summary>Creates an exception with no message.</summary>
    public ConfigException()
    {
    }

    /// <summary>Creates an exception with a message.</summary>
    public ConfigException(string message)
        : base(message)
    {
    }

    /// <summary>Creates an exception with a message and its cause.</summary>
    public ConfigException(string message, Exception innerException)
        : base(message, innerException)
    {
    }
}
