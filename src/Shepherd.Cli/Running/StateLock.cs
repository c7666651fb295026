using Shepherd.Cli.Commands;

namespace Shepherd.Cli.Running;

/// <summary>
/// Holds an exclusive lock next to the state file for the life of a run, so two runs never
/// drive one batch. The operating system drops the lock when the process dies, even by kill -9.
/// </summary>
internal sealed class StateLock : IDisposable
{
    private readonly FileStream _file;

    private StateLock(FileStream file) => _file = file;

    public static StateLock Acquire(string statePath)
    {
        var lockPath = statePath + ".lock";
        try
        {
            return new StateLock(new FileStream(lockPath, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None, 1, FileOptions.DeleteOnClose));
        }
        catch (DirectoryNotFoundException)
        {
            throw new UsageException($"The state file's folder {Path.GetDirectoryName(Path.GetFullPath(statePath))} does not exist; create it, or give a path in a folder that does.");
        }
        catch (IOException)
        {
            throw new CommandException($"Another shepherd process is using the state file {ShownPath.Of(statePath)}. Wait for it to finish, or pass another --state.", ExitCodes.Busy);
        }
        catch (UnauthorizedAccessException ex)
        {
            throw new UsageException($"The state file's folder is not writable ({lockPath}): {ex.Message}. Pass --state with a writable path.");
        }
    }

    public void Dispose() => _file.Dispose();
}
