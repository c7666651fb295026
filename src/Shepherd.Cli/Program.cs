using System.CommandLine;
using System.Runtime.InteropServices;
using Shepherd.Cli.Commands;
using Shepherd.Cli.Running;
using Shepherd.Engine.Storage;

var root = ShepherdCommands.Root();
if (args.Length == 0)
{
    // Without a command there is nothing to do: say what there is, as a usage error.
    await root.Parse(["--help"]).InvokeAsync(new InvocationConfiguration { Output = Console.Error });
    return ExitCodes.InvalidInput;
}

var parse = root.Parse(args);
var json = Refusal.JsonWanted(parse);
if (parse.Errors.Count > 0)
{
    var errors = string.Join(Environment.NewLine, parse.Errors.Select(error => error.Message));
    var exit = await Refusal.ReportAsync(Console.Out, Console.Error, json, ExitCodes.InvalidInput, errors);
    await Console.Error.WriteLineAsync("Run 'shepherd --help' (or 'shepherd COMMAND --help') to see what is accepted.");
    return exit;
}

// SIGTERM (a service manager stopping us) ends a run as Ctrl+C does: answers received are saved first.
using var terminate = new CancellationTokenSource();
using var onTerminate = PosixSignalRegistration.Create(PosixSignal.SIGTERM, signal =>
{
    signal.Cancel = true;
    try
    {
        terminate.Cancel();
    }
    catch (ObjectDisposedException)
    {
        // The signal came as the program was ending: there is nothing left to stop.
    }
});

try
{
    return await parse.InvokeAsync(new InvocationConfiguration { EnableDefaultExceptionHandler = false }, terminate.Token);
}
catch (CommandException ex)
{
    return await Refusal.ReportAsync(Console.Out, Console.Error, json, ex.ExitCode, ex.Message);
}
catch (Shepherd.Engine.Configuration.ConfigException ex)
{
    return await Refusal.ReportAsync(Console.Out, Console.Error, json, ExitCodes.InvalidInput, ex.Message);
}
catch (OperationCanceledException)
{
    await Console.Error.WriteLineAsync("Interrupted.");
    return ExitCodes.Interrupted;
}
catch (Exception ex) when (ex is StoreException or IOException or UnauthorizedAccessException)
{
    return await Refusal.ReportAsync(Console.Out, Console.Error, json, ExitCodes.Error, $"shepherd: {ex.Message}");
}
