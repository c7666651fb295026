using System.CommandLine;
using System.Runtime.InteropServices;
using Shepherd.Cli.Commands;
using Shepherd.Engine.Storage;

var root = ShepherdCommands.Root();
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
catch (Exception ex) when (ex is UsageException or Shepherd.Engine.Configuration.ConfigException)
{
    await Console.Error.WriteLineAsync(ex.Message);
    return ExitCodes.InvalidInput;
}
catch (OperationCanceledException)
{
    await Console.Error.WriteLineAsync("Interrupted.");
    return ExitCodes.Interrupted;
}
catch (Exception ex) when (ex is StoreException or IOException or UnauthorizedAccessException)
{
    await Console.Error.WriteLineAsync($"shepherd: {ex.Message}");
    return ExitCodes.Error;
}
