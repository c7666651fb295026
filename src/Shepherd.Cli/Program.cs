using System.CommandLine;
using Shepherd.Cli.Commands;

var root = new RootCommand("Shepherd: a durable batch engine for LLM APIs")
{
    RunCommand.Create(),
    SimulateCommand.Create(),
};

var parse = root.Parse(args);
if (parse.Errors.Count > 0)
{
    foreach (var error in parse.Errors)
    {
        await Console.Error.WriteLineAsync(error.Message);
    }

    await Console.Error.WriteLineAsync("Run 'shepherd --help' (or 'shepherd COMMAND --help') to see what is accepted.");
    return ExitCodes.InvalidInput;
}

try
{
    return await parse.InvokeAsync(new InvocationConfiguration { EnableDefaultExceptionHandler = false });
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
