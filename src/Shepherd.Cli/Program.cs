using System.CommandLine;
using Shepherd.Cli.Commands;

var root = new RootCommand("Shepherd: a durable batch engine for LLM APIs")
{
    RunCommand.Create(),
    SimulateCommand.Create(),
};

try
{
    return await root.Parse(args).InvokeAsync(new InvocationConfiguration { EnableDefaultExceptionHandler = false });
}
catch (UsageException ex)
{
    await Console.Error.WriteLineAsync(ex.Message);
    return ExitCodes.InvalidInput;
}
catch (OperationCanceledException)
{
    await Console.Error.WriteLineAsync("Interrupted.");
    return ExitCodes.Interrupted;
}
