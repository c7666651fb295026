namespace Shepherd.Cli.Commands;

/// <summary>The command line or the input asks for something impossible; the message says what, and the exit code is 2.</summary>
internal sealed class UsageException(string message) : Exception(message);
