using System.CommandLine;

namespace Shepherd.Cli.Commands;

/// <summary>The command line of <c>shepherd</c>: every command and its options.</summary>
internal static class ShepherdCommands
{
    public static RootCommand Root() => new("Shepherd: a durable batch engine for LLM APIs")
    {
        RunCommand.Create(),
        ServeCommand.Create(),
        SimulateCommand.Create(),
        SubmitCommand.Create(),
        StatusCommand.Create(),
        WaitCommand.Create(),
        ResultsCommand.Create(),
        CancelCommand.Create(),
        RetryCommand.Create(),
        ListCommand.Create(),
        EstimateCommand.Create(),
        CacheCommand.Create(),
    };
}
