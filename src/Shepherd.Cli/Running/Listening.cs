using Microsoft.AspNetCore.Connections;
using Shepherd.Cli.Commands;

namespace Shepherd.Cli.Running;

/// <summary>Starting what listens (the server, the simulator), with an address in use said in one line.</summary>
internal static class Listening
{
    /// <summary>Starts what <paramref name="start"/> starts; when the address is in use, runs <paramref name="undo"/> and says so.</summary>
    public static async Task<T> StartAsync<T>(string urls, string option, Func<Task<T>> start, Action? undo = null)
    {
        try
        {
            return await start();
        }
        catch (IOException ex) when (ex.InnerException is AddressInUseException)
        {
            undo?.Invoke();
            throw new CommandException($"shepherd: cannot listen on {urls}: the address is in use (is another server running there?). Give another with {option}; port 0 picks a free one.", ExitCodes.Error);
        }
    }
}
