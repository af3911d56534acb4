; Inno Setup script for the PyInstaller one-folder build (dist\kerbside), made by
;     .venv\Scripts\pyinstaller --noconfirm --distpath dist --workpath build\pyinstaller packaging\kerbside.spec
; then, with the version taken from the package metadata (never typed here):
;     iscc /DAppVersion=<version> packaging\windows\kerbside.iss
; .github/workflows/windows.yml does both, installs silently, smoke-tests and uninstalls.
;
; Two programs in one folder: kerbside.exe (console: the CLI, IT scripts, `kerbside doctor`) and
; kerbside-app.exe (windowed: what the Start Menu shortcut opens). The install folder goes on
; the machine PATH so `kerbside` works in any console.
; Per-user data (the encrypted cache) lives in %LOCALAPPDATA%\kerbside, not in a roaming or
; synced folder (SECURITY.md 8); uninstall leaves it for the Trust's wipe policy to remove.

#ifndef AppVersion
  #error Pass the version from the package metadata: iscc /DAppVersion=X.Y.Z kerbside.iss
#endif

[Setup]
; Fixed for the life of the product: upgrades and uninstall find the installed copy by it.
AppId={{8284D722-04A6-4574-8FD4-3B3B2A4C9F05}
AppName=Kerbside
AppVersion={#AppVersion}
AppVerName=Kerbside {#AppVersion}
VersionInfoVersion={#AppVersion}
AppPublisher=Kerbside
DefaultDirName={autopf}\Kerbside
DefaultGroupName=Kerbside
DisableProgramGroupPage=yes
OutputDir=..\..\dist
OutputBaseFilename=kerbside-{#AppVersion}-setup
SetupIconFile=..\icons\kerbside.ico
UninstallDisplayIcon={app}\kerbside-app.exe
Compression=lzma2
SolidCompression=yes
PrivilegesRequired=admin
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
ChangesEnvironment=yes
CloseApplications=yes

[Files]
Source: "..\..\dist\kerbside\*"; DestDir: "{app}"; Flags: recursesubdirs createallsubdirs ignoreversion

[Icons]
Name: "{group}\Kerbside"; Filename: "{app}\kerbside-app.exe"; Parameters: "gui"
Name: "{group}\Uninstall Kerbside"; Filename: "{uninstallexe}"

[Registry]
; `kerbside` on PATH for consoles opened after the install (removed again on uninstall).
Root: HKLM; Subkey: "SYSTEM\CurrentControlSet\Control\Session Manager\Environment"; ValueType: expandsz; ValueName: "Path"; ValueData: "{olddata};{app}"; Check: NeedsAddPath(ExpandConstant('{app}'))

[Code]
function NeedsAddPath(Dir: string): Boolean;
var
  Path: string;
begin
  if not RegQueryStringValue(HKLM, 'SYSTEM\CurrentControlSet\Control\Session Manager\Environment',
                             'Path', Path) then
    Result := True
  else
    Result := Pos(';' + Uppercase(Dir) + ';', ';' + Uppercase(Path) + ';') = 0;
end;

procedure CurUninstallStepChanged(CurUninstallStep: TUninstallStep);
var
  Path, Dir: string;
  P: Integer;
begin
  if CurUninstallStep <> usPostUninstall then
    exit;
  if not RegQueryStringValue(HKLM, 'SYSTEM\CurrentControlSet\Control\Session Manager\Environment',
                             'Path', Path) then
    exit;
  Dir := ';' + ExpandConstant('{app}');
  P := Pos(Uppercase(Dir), Uppercase(Path));
  if P > 0 then
  begin
    Delete(Path, P, Length(Dir));
    RegWriteExpandStringValue(HKLM, 'SYSTEM\CurrentControlSet\Control\Session Manager\Environment',
                              'Path', Path);
  end;
end;
