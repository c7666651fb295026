namespace Shepherd.Cli.Commands;

/// <summary>A command cannot go on; the message says why, and <see cref="ExitCode"/> is what the process exits with.</summary>
internal class CommandException(string message, int exitCode) : Exception(message)
{
    public int ExitCode => exitCode;
}

/// <summary>The command line or the input asks for something impossible; the message says what, and the exit code is 2.</summary>
internal sealed class UsageException(string message) : CommandException(message, ExitCodes.InvalidInput);
